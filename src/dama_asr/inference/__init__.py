"""Inference over adapted backbones: per-utterance routing to named adapters (`routing`)."""
