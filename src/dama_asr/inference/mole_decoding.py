"""Decoding with a MoLE (`dama_asr.adapters.mole`): language-aware (given) or language-agnostic (its router).

Language-aware: each utterance is routed to its given language's expert and the decoder is prompted
with that language. Language-agnostic: the router predicts each utterance's language from the hidden
states after encoder layer l1 (computed once, on the first 30 s, exactly as in the MoLE's forward),
and that prediction routes the deeper layers and chooses the prompt's language token, so nothing
about the true language is used. Either way the utterances are decoded in groups of one language,
through `transcribe` and all its guards (token caps, loop flags, long-form decoding); a MoLE routes
mixed batches row by row too (tests/adapters/test_mole.py), the grouping only keeps `transcribe`'s
batching free to sort by length.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dama_asr.adapters.mole import MoleController, MoleError, mole_of
from dama_asr.backbone.loading import Backbone
from dama_asr.features.encoder_prefix import run_bottom
from dama_asr.features.log_mel import log_mel
from dama_asr.inference.decoding import DecodingOptions, Transcript, transcribe
from dama_asr.languages import normalise_language


def controller_of(backbone: Backbone) -> MoleController:
    controller = mole_of(backbone.model)
    if controller is None:
        raise MoleError(f"{backbone.name}: not a MoLE model; pass a folder `dama train --method mole` saved")
    return controller


def router_languages(backbone: Backbone, audios: Sequence[np.ndarray], batch_size: int = 8) -> list[str]:
    """The router's language for each clip (its first 30 s), in input order."""
    controller = controller_of(backbone)
    whisper = backbone.model
    encoder = whisper.model.encoder
    dtype = next(whisper.parameters()).dtype
    fe = backbone.processor.feature_extractor
    window = fe.n_samples
    out: list[str] = []
    for start in range(0, len(audios), batch_size):
        chunk = [a[:window] for a in audios[start : start + batch_size]]
        features = log_mel(fe, chunk).to(backbone.device, dtype=dtype)  # (B, mels, 3000)
        with torch.no_grad(), backbone.autocast():
            hidden = run_bottom(encoder, features, controller.l1)
            if controller.l1 == whisper.config.encoder_layers:  # the router reads the encoder's output
                hidden = encoder.layer_norm(hidden)
            logits = controller.router(hidden)
        out += [controller.languages[int(i)] for i in logits.argmax(dim=-1).tolist()]
    return out


def transcribe_mole(
    backbone: Backbone,
    audios: Sequence[np.ndarray],
    languages: Sequence[str] | None,
    options: DecodingOptions = DecodingOptions(),
    on_batch=None,
) -> list[Transcript]:
    """Transcripts in input order; `languages` given (language-aware) or None (the router decides).
    Each Transcript's language is the one that routed it."""
    controller = controller_of(backbone)
    if languages is None:
        routed = router_languages(backbone, audios, options.batch_size)
    else:
        if len(languages) != len(audios):
            raise MoleError(f"MoLE decoding: {len(languages)} languages for {len(audios)} clips")
        routed = [normalise_language(lang) for lang in languages]
        controller.index_of(routed)  # every language must have an expert: one error, before decoding
    groups: dict[str, list[int]] = {}
    for i, code in enumerate(routed):
        groups.setdefault(code, []).append(i)
    results: list[Transcript | None] = [None] * len(audios)
    for code, idx in groups.items():
        with controller.languages_given([code]):  # one language for every row of every batch
            part = transcribe(
                backbone, [audios[i] for i in idx], options, languages=[code] * len(idx), on_batch=on_batch
            )
        for i, transcript in zip(idx, part, strict=True):
            results[i] = transcript
    return results  # type: ignore[return-value]
