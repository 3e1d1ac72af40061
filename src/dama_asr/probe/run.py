"""`run_probe`: utterances in, per-layer language-ID accuracy and suggested DAMA thresholds out."""

from __future__ import annotations

import logging
import random
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm.auto import tqdm

from dama_asr.accounting import SkippedItems
from dama_asr.backbone.loading import Backbone
from dama_asr.data.audio import AudioError, load_audio
from dama_asr.data.manifest import Utterance
from dama_asr.languages import UnknownLanguageError, normalise_language
from dama_asr.probe.curve import (
    ProbeError,
    check_label_counts,
    cross_validate,
    default_thetas,
    suggest_thetas,
)
from dama_asr.probe.features import (
    PROMPT_NOTES,
    PROMPTS,
    ProbeInput,
    extract_features,
    prompt_ids,
    transcript_ids,
)
from dama_asr.probe.result import LayerCurve, ProbeResult

log = logging.getLogger(__name__)

LAYER_CHOICES = ("decoder", "encoder", "both")


@dataclass(frozen=True)
class ProbeOptions:
    """folds: k of the stratified k-fold CV.  max_per_language: cap per language (seeded sample).
    layers: which stack(s) to probe.  prompt: neutral | fixed | forced (see `dama_asr.probe.features`);
    fixed_language: the token used by `fixed`.  level/min_depth: see `suggest_thetas`.
    """

    folds: int = 5
    max_per_language: int | None = None
    seed: int = 0
    layers: str = "both"
    batch_size: int = 8
    prompt: str = "neutral"
    fixed_language: str = "en"
    level: float = 0.5
    min_depth: float = 0.02
    reuse_encoder_outputs: bool = False

    def __post_init__(self) -> None:
        if self.layers not in LAYER_CHOICES:
            raise ProbeError(f"layers must be one of {', '.join(LAYER_CHOICES)}, got {self.layers!r}")
        if self.prompt not in PROMPTS:
            raise ProbeError(f"prompt must be one of {', '.join(PROMPTS)}, got {self.prompt!r}")
        if self.folds < 2:
            raise ProbeError(f"folds must be >= 2, got {self.folds}")
        if self.batch_size < 1:
            raise ProbeError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_per_language is not None and self.max_per_language < self.folds:
            raise ProbeError(f"max_per_language ({self.max_per_language}) must be >= folds ({self.folds})")
        if not 0 < self.level < 1:
            raise ProbeError(f"level must be in (0, 1), got {self.level}")


@dataclass
class _Selection:
    inputs: list[ProbeInput]
    labels: list[str]
    skipped: SkippedItems
    items: list[Utterance] = field(default_factory=list)  # parallel to inputs


def _label(language: str, known: set[str], prompt: str) -> str:
    """Whisper's code for the item's language. Only `forced` needs the model to have its token."""
    try:
        return normalise_language(language, known if prompt == "forced" else None)
    except UnknownLanguageError:
        if prompt == "forced":
            raise
        return language.strip()  # a language Whisper has never seen can still be probed


def _select(backbone: Backbone, items: Sequence[Utterance], options: ProbeOptions) -> _Selection:
    """Labels, a seeded per-language sample, audio and tokens; skips and counts unusable items."""
    tokenizer = backbone.processor.tokenizer
    known = backbone.languages
    fixed = normalise_language(options.fixed_language, known) if options.prompt == "fixed" else None
    skipped = SkippedItems(keep_examples=1)
    by_language: dict[str, list[Utterance]] = defaultdict(list)
    for item in items:
        if not item.text.strip():
            skipped.add("empty_text", item.id)
            continue
        by_language[_label(item.language, known, options.prompt)].append(item)

    rng = random.Random(options.seed)
    max_tokens = backbone.model.config.max_target_positions - 4  # room for the longest prompt
    selection = _Selection([], [], skipped)
    for language in sorted(by_language):
        candidates = by_language[language]
        if options.max_per_language is not None:
            rng.shuffle(candidates)  # then take the first N readable ones
        prompt_language = {"neutral": None, "fixed": fixed, "forced": language}[options.prompt]
        prompt = tuple(prompt_ids(tokenizer, prompt_language))
        taken = 0
        for item in candidates:
            if options.max_per_language is not None and taken >= options.max_per_language:
                break
            try:
                audio = load_audio(item.audio)
            except AudioError as err:
                skipped.add("unreadable_audio", str(err))
                continue
            text = tuple(transcript_ids(tokenizer, item.text, max_tokens))
            selection.inputs.append(ProbeInput(audio=audio, prompt=prompt, text=text))
            selection.labels.append(language)
            selection.items.append(item)
            taken += 1
    return selection


def _curves(
    features: np.ndarray, labels: list[str], options: ProbeOptions, desc: str, progress: bool
) -> LayerCurve:
    scores = [
        cross_validate(layer, labels, options.folds, options.seed)
        for layer in tqdm(features, desc=f"CV {desc}", unit="layer", leave=False, disable=not progress)
    ]  # features: (L+1, N, D)
    return LayerCurve(
        layers=tuple(range(len(scores))),
        mean=tuple(s.mean for s in scores),
        std=tuple(s.std for s in scores),
        folds=tuple(s.folds for s in scores),
    )


def run_probe(
    backbone: Backbone,
    items: Sequence[Utterance],
    options: ProbeOptions = ProbeOptions(),
    progress: bool = True,
) -> ProbeResult:
    """Probe every layer of `backbone` for language identity over `items` (>= 2 languages).

    Unusable items (empty transcript, unreadable or over-long audio) are skipped and counted; the
    language counts are checked before any forward pass.
    """
    started = time.perf_counter()
    selection = _select(backbone, items, options)
    counts = dict(sorted(Counter(selection.labels).items()))
    skipped_text = ", ".join(
        f"skipped {n} {why.replace('_', ' ')}" for why, n in sorted(selection.skipped.counts.items())
    )
    check_label_counts(counts, options.folds, skipped_text)
    loaded = time.perf_counter()

    want_decoder = options.layers in ("decoder", "both")
    want_encoder = options.layers in ("encoder", "both")
    encoder_outputs = None
    if options.reuse_encoder_outputs and not want_encoder:
        # Decoder-only probing needs just the encoder's output, which is the same for the base model and
        # every frozen-encoder adaptation of it: encode once, probe many models.
        from dama_asr.features.encoder_cache import cached_encoder_outputs

        encoder_outputs = cached_encoder_outputs(backbone, selection.items, options.batch_size)
    with tqdm(total=len(selection.inputs), desc="probe forward", unit="utt", disable=not progress) as bar:
        features = extract_features(
            backbone, selection.inputs, want_decoder, want_encoder, options.batch_size, on_batch=bar.update,
            encoder_outputs=encoder_outputs,
        )  # fmt: skip
    forwarded = time.perf_counter()

    decoder = (
        _curves(features.decoder, selection.labels, options, "decoder", progress) if want_decoder else None
    )
    encoder = (
        _curves(features.encoder, selection.labels, options, "encoder", progress) if want_encoder else None
    )
    if decoder is not None:
        suggestion = suggest_thetas(decoder.mean, decoder.std, options.level, options.min_depth)
    else:
        suggestion = default_thetas(backbone.model.config.decoder_layers, "decoder not probed")
    finished = time.perf_counter()

    settings = {
        **asdict(options),
        "precision": backbone.precision,
        "prompt_tokens": backbone.processor.tokenizer.convert_ids_to_tokens(list(selection.inputs[0].prompt))
        if options.prompt != "forced"
        else "<|startoftranscript|><|xx|><|transcribe|><|notimestamps|> with each utterance's language",
        "prompt_note": PROMPT_NOTES[options.prompt],
        "pooling": "decoder: mean over transcript tokens only (no prompt, no padding, no <|endoftext|>); "
        "encoder: mean over the frames holding audio (ceil(seconds * 50) of 1500 on Whisper)",
        "classifier": "StandardScaler + LogisticRegression(lbfgs, max_iter=2000), StratifiedKFold(shuffle, seed)",
        "caveat": "the transcript tokens themselves identify the language, so decoder layer 0 (token + "
        "position embeddings) is near-perfect by construction; the curve shows how much of that identity "
        "each layer keeps",
        "skipped_examples": {why: shown[0] for why, shown in selection.skipped.examples.items()},
    }
    return ProbeResult(
        model=backbone.name,
        languages=counts,
        chance=max(counts.values()) / sum(counts.values()),
        decoder=decoder,
        encoder=encoder,
        suggestion=suggestion,
        settings=settings,
        skipped=dict(selection.skipped.counts),
        seconds={
            "load": round(loaded - started, 2),
            "forward": round(forwarded - loaded, 2),
            "classify": round(finished - forwarded, 2),
            "total": round(finished - started, 2),
        },
    )
