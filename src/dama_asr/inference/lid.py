"""Spoken-language identification with Whisper's own decoder: the router a user gets for free.

Whisper predicts the language as its first token: one decoder step from <|startoftranscript|>, then a
softmax over the language tokens (OpenAI's `decoding.detect_language`, transformers'
`WhisperGenerationMixin.detect_language`, which returns only the argmax). We keep the probabilities,
over all of the model's languages or renormalised over `candidates` (an adapter set's languages):
softmax restricted to a subset is the full distribution divided by the subset's mass, so the ratios
between candidates do not change.

Detection always runs the BASE model: an adapter set's adapters are disabled for the step. An adapter
was trained on one language, prompted with that language's token; its first-token distribution says
little about which language is spoken, and which adapter is active must not decide the route.
Each utterance is judged on its first 30 s, as Whisper's long-form transcription does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from peft import PeftModel
from tqdm.auto import tqdm

from dama_asr.backbone.loading import Backbone
from dama_asr.data.audio import load_audio
from dama_asr.data.manifest import Utterance
from dama_asr.errors import DamaError
from dama_asr.features.log_mel import log_mel
from dama_asr.languages import UnknownLanguageError, normalise_language, unsupported_language_message

# What detection reads: log-mel features (N, mels, >= 3000 frames), 16 kHz arrays, or manifest items.
LidInputs = torch.Tensor | Sequence[np.ndarray] | Sequence[Utterance]


class LanguageIdError(DamaError, ValueError):
    """Language identification that cannot run: an unknown candidate language, nothing to detect on."""


def _lang_to_id(backbone: Backbone) -> dict[str, int]:
    """code -> token id, in token order (Whisper's own order: en, zh, de, ...)."""
    lang_to_id = getattr(backbone.model.generation_config, "lang_to_id", None) or {}
    if not lang_to_id:
        raise LanguageIdError(
            f"{backbone.name} has no language tokens (an English-only Whisper?); use a multilingual model"
        )
    pairs = sorted(lang_to_id.items(), key=lambda kv: kv[1])
    return {token.strip("<|>"): int(token_id) for token, token_id in pairs}


def candidate_codes(backbone: Backbone, candidates: Sequence[str] | None = None) -> list[str]:
    """The codes detection chooses among: `candidates` as Whisper codes (names accepted, duplicates
    dropped, order kept), or every language of the model when None."""
    known = _lang_to_id(backbone)
    if candidates is None:
        return list(known)
    if isinstance(candidates, str):
        candidates = [candidates]  # "cy" is one candidate, not the two letters c and y
    if not candidates:
        raise LanguageIdError("no candidate languages given; pass at least one code, or None for all")
    codes = []
    for lang in candidates:
        try:
            code = normalise_language(lang)
        except UnknownLanguageError:
            raise LanguageIdError(
                f"language-ID candidate {lang!r} is not a Whisper language; pass Whisper codes such as "
                "'en' or 'cy' (or names such as 'Welsh'), or None to choose among all of the model's languages"
            ) from None
        if code not in known:
            raise LanguageIdError(f"language-ID candidate {lang!r}: " + unsupported_language_message(
                code, known, backbone.name))  # fmt: skip
        codes.append(code)
    return list(dict.fromkeys(codes))


@contextlib.contextmanager
def _adapters_off(model) -> Iterator[None]:
    """Every adapter off (a no-op for a model without any); on leaving, peft turns the active adapter on
    again and marks it trainable, so each parameter's requires_grad is put back as it was."""
    if not isinstance(model, PeftModel):
        yield
        return
    grads = [(p, p.requires_grad) for p in model.parameters()]
    try:
        with model.disable_adapter():
            yield
    finally:
        for p, flag in grads:
            p.requires_grad_(flag)


def _features(backbone: Backbone, inputs: LidInputs, start: int, stop: int) -> torch.Tensor:
    """Log-mel of the first 30 s of inputs[start:stop]: (B, mels, 3000)."""
    frames = backbone.processor.feature_extractor.nb_max_frames
    if isinstance(inputs, torch.Tensor):
        return inputs[start:stop, :, :frames]
    chunk = [
        load_audio(x.audio, max_seconds=None) if isinstance(x, Utterance) else x for x in inputs[start:stop]
    ]
    return log_mel(backbone.processor.feature_extractor, chunk)  # cut or padded to the 30 s window


def language_probabilities(
    backbone: Backbone,
    inputs: LidInputs,
    candidates: Sequence[str] | None = None,
    batch_size: int = 8,
) -> tuple[list[str], torch.Tensor]:
    """(codes, probs (N, len(codes))): each utterance's language distribution under the base Whisper.

    Rows sum to 1 over `codes` (the candidates, renormalised; or all of the model's languages).
    Computed at the backbone's precision, without gradients, `batch_size` utterances per step; returned
    as float32 on the CPU.
    """
    if batch_size < 1:
        raise LanguageIdError(f"batch_size must be at least 1, got {batch_size}")
    ids = _lang_to_id(backbone)
    codes = candidate_codes(backbone, candidates)
    token_ids = torch.tensor([ids[c] for c in codes])
    model = backbone.model
    whisper = model.get_base_model() if isinstance(model, PeftModel) else model
    config = whisper.generation_config
    dtype = next(whisper.parameters()).dtype
    n = len(inputs)
    rows = []
    with (
        tqdm(total=n, desc="detecting language", unit="utt", leave=False, disable=n <= batch_size) as bar,
        _adapters_off(model),
        torch.no_grad(),
    ):
        for start in range(0, n, batch_size):
            # Log-mel outside autocast: the feature extractor's torch matmul would come out bf16 there,
            # which numpy (its output) cannot hold.
            features = _features(backbone, inputs, start, start + batch_size).to(backbone.device, dtype=dtype)
            # (B, mels, 3000) -> one step from <|startoftranscript|>: logits (B, V) for the first token
            sot = torch.full((features.shape[0], 1), config.decoder_start_token_id, device=backbone.device)
            with backbone.autocast():
                logits = whisper(input_features=features, decoder_input_ids=sot, use_cache=False).logits[
                    :, -1
                ]
            lang_logits = logits[:, token_ids.to(logits.device)].float()  # (B, K)
            rows.append(torch.softmax(lang_logits, dim=-1).cpu())
            bar.update(features.shape[0])
    probs = torch.cat(rows) if rows else torch.empty(0, len(codes))
    return codes, probs  # (N, K)


def detect_languages(
    backbone: Backbone,
    inputs: LidInputs,
    candidates: Sequence[str] | None = None,
    batch_size: int = 8,
) -> list[str]:
    """The most probable language of each utterance among `candidates` (all when None), in input order."""
    codes, probs = language_probabilities(backbone, inputs, candidates, batch_size)
    return [codes[i] for i in probs.argmax(dim=-1).tolist()]


def mean_language_probabilities(
    backbone: Backbone,
    inputs: LidInputs,
    candidates: Sequence[str] | None = None,
    batch_size: int = 8,
) -> dict[str, float]:
    """code -> mean probability over the utterances, most probable first: which of the model's (or the
    candidates') languages a body of speech sounds most like."""
    if len(inputs) == 0:
        raise LanguageIdError("no utterances to average language probabilities over")
    codes, probs = language_probabilities(backbone, inputs, candidates, batch_size)
    means = probs.mean(dim=0).tolist()
    return dict(sorted(zip(codes, means, strict=True), key=lambda kv: kv[1], reverse=True))


def lid_summary(true: Sequence[str], detected: Sequence[str], candidates: Sequence[str]) -> dict:
    """How detection among `candidates` did against the true codes, one pair per utterance.

    {"languages": the candidates, "accuracy": correct / utterances (None when there are none),
    "utterances": those whose true language is a candidate, "correct", "confusion": {true: {detected:
    n}} over every utterance (sorted codes), "outside_set": {"utterances", "languages": {true: n}}
    for true languages outside the candidates, which detection cannot get right}.
    """
    if len(true) != len(detected):
        raise LanguageIdError(f"lid_summary: {len(true)} true languages for {len(detected)} detected ones")
    confusion: dict[str, dict[str, int]] = {}
    outside: dict[str, int] = {}
    in_set = correct = 0
    for t, d in zip(true, detected, strict=True):
        row = confusion.setdefault(t, {})
        row[d] = row.get(d, 0) + 1
        if t in candidates:
            in_set += 1
            correct += t == d
        else:
            outside[t] = outside.get(t, 0) + 1
    return {
        "languages": list(candidates),
        "accuracy": correct / in_set if in_set else None,
        "utterances": in_set,
        "correct": correct,
        "confusion": {t: dict(sorted(row.items())) for t, row in sorted(confusion.items())},
        "outside_set": {"utterances": sum(outside.values()), "languages": dict(sorted(outside.items()))},
    }


__all__ = [
    "LanguageIdError",
    "candidate_codes",
    "detect_languages",
    "language_probabilities",
    "lid_summary",
    "mean_language_probabilities",
]
