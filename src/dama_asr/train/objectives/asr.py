"""`asr`: Whisper's own objective, cross-entropy of the transcript tokens given the audio."""

from __future__ import annotations

from torch import nn

from dama_asr.train.objectives.base import LossParts, Objective, StepModel


class AsrObjective(Objective):
    """Summed token cross-entropy at the labelled positions; no other term."""

    name = "asr"

    def loss(self, model: StepModel, batch: dict) -> LossParts:
        logits, targets = model.labelled_logits(batch)  # (N, V), (N,)
        # float32 log-softmax even under autocast: bf16 over 51,865 classes loses the small probabilities.
        return LossParts(nn.functional.cross_entropy(logits.float(), targets, reduction="sum"))
