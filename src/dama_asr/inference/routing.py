"""Per-utterance adapter routing: decode each utterance of a mixed-language batch with its language's adapter.

The model is a PeftModel holding one named adapter per language (`dama_asr.adapters.sets`). Two paths
give the same tokens; `choose_route` picks one:

- MIXED: one generate call; peft's `adapter_names=[...]` sends each row through its own LoRA factors
  (`LoraLayer._mixed_batch_forward`). Only plain unmerged LoRA supports it: peft refuses DoRA and merged
  weights, and other tuners (VeRA, ...) would silently ignore the names.
- GROUPED: group the rows by language, activate each adapter in turn, decode the group, put the rows
  back in input order. Works for every adapter kind, at one generate call per language.

Clips over 30 s never take the mixed path: Whisper's long-form loop drops finished clips from the batch
between windows, so a fixed list of adapter names would no longer line up with the rows.

Where each utterance's language comes from (`transcribe_set`'s `by`): GIVEN takes the caller's (a
manifest's) languages, and one the set has no adapter for is an error (`check_set_covers`).
WHISPER_LID takes the base Whisper's own language identification among the set's languages
(`inference.lid`, `transcribe_detected`): each utterance goes to the adapter of the language it sounds
most like, and the decoder is prompted with that language. Speech in a language outside the set then
goes to its nearest member, with a warning; it is counted apart and left out of the LID accuracy
(it cannot be detected correctly).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import torch
from peft import LoraConfig, PeftModel
from peft.tuners.lora import LoraModel
from peft.tuners.lora.layer import Conv1d, Conv2d, Conv3d, Embedding, Linear, LoraLayer
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from dama_asr.adapters.sets import AdapterSetError, activate
from dama_asr.backbone.loading import Backbone
from dama_asr.inference.decoding import DecodingOptions, Transcript, transcribe
from dama_asr.inference.lid import detect_languages, lid_summary
from dama_asr.languages import UnknownLanguageError, normalise_language

log = logging.getLogger(__name__)

Route = Literal["mixed", "grouped"]
MIXED: Route = "mixed"
GROUPED: Route = "grouped"
# The LoRA layer kinds whose forward takes `adapter_names` (lora.MultiheadAttention raises instead).
_MIXED_LAYERS = (Linear, Embedding, Conv1d, Conv2d, Conv3d)
# generate() keywords that hold one entry per row; the grouped path slices them with the rows.
_PER_ROW = ("language", "attention_mask", "decoder_input_ids", "decoder_attention_mask")
# Where an utterance's language (so its adapter) comes from: given by the caller, or detected.
GIVEN = "given"
WHISPER_LID = "whisper-lid"
LANGUAGE_ROUTES = (GIVEN, WHISPER_LID)


def set_languages(model: nn.Module) -> list[str]:
    """The names of the adapters a model holds: an adapter set's language codes."""
    held = list(model.peft_config) if isinstance(model, PeftModel) else []
    if not held:
        raise AdapterSetError("routing needs a model holding named adapters; load an adapter set into it")
    return held


def adapter_names_for(model: nn.Module, languages: Sequence[str]) -> list[str]:
    """The adapter name of each utterance's language ('Welsh' -> 'cy'); an error names a missing one."""
    held = set_languages(model)
    names = []
    for lang in languages:
        if lang is None:
            raise AdapterSetError(
                "routing needs a language per utterance (it picks the adapter); without one, route by "
                "Whisper's detection: transcribe_detected"
            )
        code = lang
        if code not in held:
            try:
                code = normalise_language(lang)
            except UnknownLanguageError as err:
                raise AdapterSetError(f"routing: {err}") from None
        if code not in held:
            raise AdapterSetError(f"no adapter for language {code!r}; the model holds {', '.join(held)}")
        names.append(code)
    return names


def choose_route(model: PeftModel, names: Sequence[str], long_form: bool = False) -> Route:
    """MIXED when peft can route these adapters within one batch, else GROUPED."""
    if long_form or len(set(names)) < 2:
        return GROUPED  # one language is one group: nothing to mix
    if not isinstance(model.base_model, LoraModel):
        return GROUPED
    if not all(isinstance(model.peft_config[n], LoraConfig) for n in names):
        return GROUPED
    wanted = set(names)
    for module in model.modules():
        if not isinstance(module, BaseTunerLayer):
            continue
        if not isinstance(module, _MIXED_LAYERS) or module.merged:
            return GROUPED
        # DoRA and other LoRA variants change the forward itself; peft routes plain LoRA only.
        if isinstance(module, LoraLayer) and wanted.intersection(module.lora_variant):
            return GROUPED
    return MIXED


@contextlib.contextmanager
def restoring_adapter(model: PeftModel) -> Iterator[None]:
    """Put back the active adapter and every requires_grad flag that routing's activations change."""
    active = model.active_adapter
    grads = [(p, p.requires_grad) for p in model.parameters()]
    try:
        yield
    finally:
        model.set_adapter(active)
        for p, flag in grads:
            p.requires_grad_(flag)


def _groups(names: Sequence[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(name, []).append(i)
    return groups


def _sequences(out) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out["sequences"]


def _rows(value, idx: list[int]):
    if isinstance(value, torch.Tensor):
        return value[idx]
    if isinstance(value, (list, tuple)):
        return [value[i] for i in idx]
    return value  # one value for every row (a single language string)


def generate_routed(
    model: PeftModel,
    languages: Sequence[str],
    *,
    input_features: torch.Tensor,
    route: Route | None = None,
    **generate_kwargs,
) -> torch.Tensor:
    """Token ids (B, L) for log-mel features (B, mels, frames), row i decoded with languages[i]'s adapter.

    Each row's Whisper language token is forced to its adapter's language unless `language=` is given.
    `route` overrides `choose_route` (MIXED on adapters peft cannot mix raises peft's error). Rows of
    the grouped path are right-padded with the pad token to the longest group's length.
    """
    names = adapter_names_for(model, languages)
    if len(names) != input_features.shape[0]:
        raise AdapterSetError(f"routing: {len(names)} languages for {input_features.shape[0]} feature rows")
    kwargs = {"language": names, **generate_kwargs}
    config = model.get_base_model().generation_config
    # peft repeats the names per beam only when it sees num_beams; Whisper would otherwise take it
    # from the generation config and the rows would no longer line up with the names.
    kwargs.setdefault("num_beams", config.num_beams or 1)
    long_form = input_features.shape[-1] > 2 * model.get_base_model().config.max_source_positions
    route = route or choose_route(model, names, long_form)
    if not long_form:
        # One pass, as `transcribe` decodes short clips: the batch never shrinks, and both paths
        # return the same rows (prompt included).
        kwargs.setdefault("force_unique_generate_call", True)
    if route == MIXED:
        with torch.no_grad():
            return _sequences(model.generate(input_features=input_features, adapter_names=names, **kwargs))
    rows: list[torch.Tensor | None] = [None] * len(names)
    with restoring_adapter(model), torch.no_grad():
        for name, idx in _groups(names).items():
            activate(model, name)
            part = {k: _rows(v, idx) if k in _PER_ROW else v for k, v in kwargs.items()}
            out = _sequences(model.generate(input_features=input_features[idx], **part))
            for i, row in zip(idx, out, strict=True):
                rows[i] = row
    pad = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad)  # type: ignore[arg-type]


def transcribe_routed(
    backbone: Backbone,
    audios: Sequence[np.ndarray],
    languages: Sequence[str],
    options: DecodingOptions = DecodingOptions(),
    route: Route | None = None,
) -> list[Transcript]:
    """`transcribe` with each utterance decoded by its language's adapter; transcripts in input order.

    `backbone.model` holds the adapters (`adapters.sets.adapter_set_backbone`). Clips within 30 s
    take `choose_route`'s path (or `route`): MIXED decodes them in shared batches, each row through
    its own adapter; GROUPED activates each language's adapter in turn for its clips. Longer clips
    are always grouped (long-form decoding). Both go through `transcribe`, so they get every guard it
    has (token caps, loop flags); they give the same tokens.
    """
    model = backbone.model
    if len(languages) != len(audios):
        raise AdapterSetError(f"routing: {len(languages)} languages for {len(audios)} clips")
    names = adapter_names_for(model, languages)
    window = backbone.processor.feature_extractor.n_samples
    short = [i for i, audio in enumerate(audios) if len(audio) <= window]
    route = route or choose_route(model, [names[i] for i in short])
    results: list[Transcript | None] = [None] * len(audios)
    grouped = list(range(len(audios)))
    with restoring_adapter(model):
        if route == MIXED and short:
            mine = [names[i] for i in short]
            part = transcribe(
                backbone, [audios[i] for i in short], options, languages=mine, adapter_names=mine
            )
            for i, transcript in zip(short, part, strict=True):
                results[i] = transcript
            grouped = [i for i in grouped if results[i] is None]
        for name, idx in _groups([names[i] for i in grouped]).items():
            rows = [grouped[k] for k in idx]
            activate(model, name)
            part = transcribe(backbone, [audios[i] for i in rows], options, languages=[name] * len(rows))
            for i, transcript in zip(rows, part, strict=True):
                results[i] = transcript
    return results  # type: ignore[return-value]


def transcribe_detected(
    backbone: Backbone, audios: Sequence[np.ndarray], options: DecodingOptions = DecodingOptions()
) -> list[Transcript]:
    """`transcribe_routed` with each utterance's language detected by the base Whisper among the set's
    languages (`inference.lid.detect_languages`, on its first 30 s); `Transcript.language` is the
    detected code. Speech in a language the set lacks goes to the language it sounds most like."""
    detected = detect_languages(backbone, audios, set_languages(backbone.model), options.batch_size)
    return transcribe_routed(backbone, audios, detected, options)


def check_set_covers(backbone: Backbone, languages: Sequence[str], ids: Sequence[str], where: str) -> None:
    """Raise, naming the set, the languages, the first utterance and the fixes, when the set has no
    adapter for some of `languages` (one per utterance, `ids` naming them); before any decoding."""
    held = set_languages(backbone.model)
    missing: dict[str, list[str]] = {}
    for lang, item_id in zip(languages, ids, strict=True):
        code = lang if lang in held else normalise_language(lang)
        if code not in held:
            missing.setdefault(code, []).append(item_id)
    if missing:
        first = next(iter(missing.values()))[0]
        raise AdapterSetError(
            f"{where}: {sum(map(len, missing.values()))} utterance(s) in {', '.join(sorted(missing))} "
            f"(first: {first!r}), which the adapter set {backbone.name} has no adapter for (it holds "
            f"{', '.join(held)}); drop them, add an adapter for that language to the set, or route by "
            "Whisper's detection (--route whisper-lid), which sends each to the set's nearest language"
        )


def transcribe_set(
    backbone: Backbone,
    audios: Sequence[np.ndarray],
    languages: Sequence[str],
    options: DecodingOptions = DecodingOptions(),
    by: str = GIVEN,
) -> tuple[list[Transcript], dict]:
    """Transcripts of an adapter set, each utterance routed `by` its given language or Whisper's
    detection (module docstring), and a record of the routing: {"route", "languages" (the set's)},
    under WHISPER_LID with `lid_summary`'s accuracy and confusion against `languages` as the truth."""
    if by not in LANGUAGE_ROUTES:
        raise AdapterSetError(f"route {by!r}: one of {', '.join(LANGUAGE_ROUTES)}")
    held = set_languages(backbone.model)
    if by == GIVEN:
        return transcribe_routed(backbone, audios, languages, options), {"route": by, "languages": held}
    transcripts = transcribe_detected(backbone, audios, options)
    true = [lang if lang in held else normalise_language(lang) for lang in languages]
    summary = lid_summary(true, [tr.language for tr in transcripts], held)
    outside = summary["outside_set"]
    if outside["utterances"]:
        counts = ", ".join(f"{code} {n}" for code, n in outside["languages"].items())
        log.warning(
            f"{outside['utterances']} utterance(s) in languages the adapter set has no adapter for ({counts}) "
            "were routed to the detected language's adapter; left out of the LID accuracy"
        )
    return transcripts, {"route": by, **summary}
