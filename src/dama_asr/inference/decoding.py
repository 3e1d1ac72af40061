"""Batched Whisper decoding with guards against runaway generation.

Batched greedy decoding runs until every sequence has ended, so one repetition loop makes the
whole batch pay the maximum length. We (1) sort by duration so batches hold similar lengths,
(2) cap new tokens by audio duration, and (3) flag suspicious outputs, naming the rule that fired
(`SUSPICIOUS_REASONS`): hit the cap, loop, or hold more letters than the audio's speech could.

Clips longer than Whisper's 30 s window are decoded one at a time by Whisper's sequential long-form
algorithm (paper, section 3.8): decode a window with timestamps, seek to the end of its last complete
segment, repeat. A model that stops predicting useful timestamps could seek a few frames per window for
thousands of windows, so the number of windows is bounded and such a clip falls back to fixed windows.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutput

from dama_asr.backbone.loading import Backbone
from dama_asr.data.audio import SAMPLE_RATE
from dama_asr.errors import DamaError
from dama_asr.features.log_mel import log_mel
from dama_asr.inference.segments import (
    MODEL,
    TIMESTAMP_SOURCES,
    WINDOW,
    Segment,
    fixed_window_segments,
    long_form_segments,
    row_segments,
    whole_clip,
)
from dama_asr.languages import normalise_language
from dama_asr.scoring import (
    LOOP_COMPRESSION_RATIO,
    compression_ratio,
    has_repetition_loop,
    too_long_for_audio,
)

# Generous for dense scripts: Georgian or Indic text can take ~20 byte-level BPE tokens per second.
TOKENS_PER_SECOND = 25
MIN_NEW_TOKENS = 16
# Whisper's 448 positions minus the 4-token prompt (<|sot|><|xx|><|transcribe|><|notimestamps|>).
MAX_NEW_TOKENS = 444

# Gives encoder outputs (B, frames, D) for the items at these input positions, instead of running the
# encoder (see train.encoder_cache.cached_encoder_outputs).
EncoderOutputs = Callable[[Sequence[int]], torch.Tensor]

# Why an output is suspicious: stable strings, since evaluations count utterances by them.
RUNAWAY = "runaway"  # hit the duration's token cap without ending
LOOP = "loop"  # ends in a repeated pattern, or compresses like one
TOO_LONG = "too long for its audio"  # more letters than its seconds of speech can hold
STALLED = "long-form stalled"  # long-form seeking stopped advancing; decoded in fixed windows
SUSPICIOUS_REASONS = (RUNAWAY, LOOP, TOO_LONG, STALLED)


class _DropLengthClashWarning(logging.Filter):
    """Our per-batch max_new_tokens always overrides Whisper's max_length=448; the warning is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "seem to have been set" not in record.getMessage()


logging.getLogger("transformers.generation.utils").addFilter(_DropLengthClashWarning())


class DecodingOptionsError(DamaError, ValueError):
    """Decoding settings that cannot work (a beam of 0, an unknown task)."""


@dataclass(frozen=True)
class DecodingOptions:
    """language: a Whisper code to force, or None to detect per utterance.  beam_size 1 is greedy.

    timestamps: None (default) returns no segments. "model": clips within 30 s are decoded with
    timestamp tokens (not <|notimestamps|>, so their text can differ) and each Transcript holds
    segments timed by them, or by its windows where the model predicts no usable ones; "window":
    decoded as by default, segments timed by the decoding windows (`inference.segments`)."""

    language: str | None = None
    task: str = "transcribe"
    beam_size: int = 1
    batch_size: int = 8
    tokens_per_second: float = TOKENS_PER_SECOND
    timestamps: str | None = None

    def __post_init__(self) -> None:
        if self.task not in ("transcribe", "translate"):
            raise DecodingOptionsError(f"--task must be 'transcribe' or 'translate', got {self.task!r}")
        if self.timestamps is not None and self.timestamps not in TIMESTAMP_SOURCES:
            raise DecodingOptionsError(
                f"--timestamps must be one of {', '.join(TIMESTAMP_SOURCES)}, got {self.timestamps!r}"
            )
        if self.beam_size < 1 or self.batch_size < 1:
            raise DecodingOptionsError(
                f"--beam-size and --batch-size must be at least 1, got {self.beam_size} and {self.batch_size}"
            )


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    tokens: tuple[int, ...]
    hit_token_cap: bool
    repetition_loop: bool
    # Longer than the 30 s window: decoded long-form. `stalled`: long-form seeking made too little
    # progress, so the text comes from back-to-back 30 s windows instead (words at their edges may break).
    long_form: bool = False
    stalled: bool = False
    # The clip's length: an output can be too long for it (0 = unknown, never flagged as too long).
    seconds: float = 0.0
    # With DecodingOptions.timestamps: the timed segments (their texts joined and stripped are `text`)
    # and what timed them, "model" or "window"; empty and None otherwise.
    segments: tuple[Segment, ...] = ()
    timestamps: str | None = None

    @property
    def suspicious_reasons(self) -> tuple[str, ...]:
        """The rules this output breaks, in SUSPICIOUS_REASONS order; empty when none."""
        broken = {
            RUNAWAY: self.hit_token_cap,
            LOOP: self.repetition_loop or compression_ratio(self.text) > LOOP_COMPRESSION_RATIO,
            TOO_LONG: too_long_for_audio(self.text, self.seconds),
            STALLED: self.stalled,
        }
        return tuple(reason for reason in SUSPICIOUS_REASONS if broken[reason])

    @property
    def suspicious(self) -> bool:
        """Likely made-up output: any of `suspicious_reasons`."""
        return bool(self.suspicious_reasons)


def max_new_tokens_for(seconds: float, tokens_per_second: float = TOKENS_PER_SECOND) -> int:
    return int(min(MAX_NEW_TOKENS, max(MIN_NEW_TOKENS, math.ceil(seconds * tokens_per_second))))


def _detect_languages(backbone: Backbone, inputs: dict) -> list[str]:
    model = backbone.model
    with torch.no_grad(), backbone.autocast():
        lang_ids = model.detect_language(**inputs, generation_config=model.generation_config)
    id_to_lang = {v: k.strip("<|>") for k, v in model.generation_config.lang_to_id.items()}
    return [id_to_lang[int(i)] for i in lang_ids.flatten().tolist()]


def _decode_batch(
    backbone: Backbone,
    audios: Sequence[np.ndarray],
    languages: list[str | None],
    options: DecodingOptions,
    encoder_outputs: torch.Tensor | None = None,
    adapter_names: list[str] | None = None,
) -> list[Transcript]:
    processor, model = backbone.processor, backbone.model
    dtype = next(model.parameters()).dtype
    if encoder_outputs is not None:
        hidden = encoder_outputs.to(backbone.device, dtype=dtype)  # (B, 1500, D)
        inputs: dict = {"encoder_outputs": BaseModelOutput(last_hidden_state=hidden)}
    else:
        features = log_mel(processor.feature_extractor, audios)
        inputs = {"input_features": features.to(backbone.device, dtype=dtype)}  # (B, mels, 3000)
    if any(lang is None for lang in languages):
        detected = _detect_languages(backbone, inputs)
        languages = [lang or det for lang, det in zip(languages, detected, strict=True)]
    cap = max_new_tokens_for(max(len(a) for a in audios) / SAMPLE_RATE, options.tokens_per_second)
    cap = min(cap, model.generation_config.max_length - 4)
    # peft's mixed batch: row i through adapter_names[i] (`inference.routing`, plain LoRA sets only).
    routed = {"adapter_names": adapter_names} if adapter_names is not None else {}
    with torch.no_grad(), backbone.autocast():
        out = model.generate(
            **inputs,
            **routed,
            language=languages,
            task=options.task,
            num_beams=options.beam_size,
            max_new_tokens=cap,
            return_timestamps=options.timestamps == MODEL,
            # Inputs are <= 30 s: one decoding pass. Without this, a model that emits timestamp tokens
            # (fine-tuned or random) sends transformers into its long-form loop, re-decoding 5x or more.
            force_unique_generate_call=True,
        )
    sequences = out if isinstance(out, torch.Tensor) else out.sequences
    # Every id from <|endoftext|> up is a control or timestamp token; padding is <|endoftext|> too.
    first_special = processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    results = []
    limit = model.generation_config.max_length - 4
    prompt_ids = _prompt_token_ids(model.generation_config)
    for audio, lang, row in zip(audios, languages, sequences.tolist(), strict=True):
        # Each item keeps its own duration budget, so results do not depend on batch neighbours. The
        # budget is for what the model wrote: the decoder prompt the sequence starts with is not counted.
        item_cap = min(limit, max_new_tokens_for(len(audio) / SAMPLE_RATE, options.tokens_per_second))
        start = 0
        while start < len(row) and row[start] in prompt_ids:
            start += 1
        generated = row[start:][:item_cap]
        content = [t for t in generated if t < first_special]
        text = _decode_text(processor, content).strip()
        seconds = len(audio) / SAMPLE_RATE
        segments, source = (), None
        if options.timestamps == MODEL:
            begin = processor.tokenizer.convert_tokens_to_ids("<|0.00|>")
            decode = functools.partial(_decode_text, processor)
            segments, source = row_segments(generated, begin, first_special, decode, text, seconds)
        elif options.timestamps == WINDOW:
            segments, source = whole_clip(text, seconds)
        results.append(
            Transcript(
                text=text,
                language=lang,
                tokens=tuple(content),
                hit_token_cap=len(generated) >= item_cap and first_special not in generated,
                repetition_loop=has_repetition_loop(content),
                seconds=seconds,
                segments=segments,
                timestamps=source,
            )
        )
    return results


def _prompt_token_ids(generation_config) -> frozenset[int]:
    """The ids a Whisper decoder prompt is made of: <|startoftranscript|>, the language and task tokens
    and <|notimestamps|> (timestamps, which the model writes itself, are not among them)."""
    gc = generation_config
    ids = {gc.decoder_start_token_id, getattr(gc, "no_timestamps_token_id", None)}
    ids |= set((getattr(gc, "lang_to_id", None) or {}).values()) | set(
        (getattr(gc, "task_to_id", None) or {}).values()
    )
    return frozenset(i for i in ids if i is not None)


def _decode_text(processor, tokens: list[int]) -> str:
    return processor.tokenizer.decode(tokens, skip_special_tokens=True)


class _Stalled(Exception):
    """Raised from generate's progress hook to stop a long-form decode that has used its windows."""


def long_form_window_budget(seconds: float) -> int:
    """Windows a long-form decode may use. Whisper on speech seeks ~20-30 s per window; four per 30 s
    (7.5 s each) plus two spare means only a model seeking a few frames at a time runs out."""
    return 4 * math.ceil(seconds / 30) + 2


def _decode_long(
    backbone: Backbone,
    audio: np.ndarray,
    language: str | None,
    options: DecodingOptions,
    max_windows: int | None = None,
) -> Transcript:
    """One clip over 30 s, sequential long-form; back-to-back windows if it runs out of windows."""
    processor, model = backbone.processor, backbone.model
    fe = processor.feature_extractor
    dtype = next(model.parameters()).dtype
    feats = fe(
        [audio],
        sampling_rate=SAMPLE_RATE,
        return_tensors="pt",
        truncation=False,
        padding="longest",
        return_attention_mask=True,
    )
    features = feats.input_features.to(backbone.device, dtype=dtype)  # (1, mels, frames > 3000)
    if language is None:  # Whisper detects from the first window, as its own transcribe() does
        language = _detect_languages(backbone, {"input_features": features[..., : fe.nb_max_frames]})[0]
    seconds = len(audio) / SAMPLE_RATE
    budget = max_windows or long_form_window_budget(seconds)
    starts: list[float] = []  # each window's start, in seconds

    def count_window(progress: torch.Tensor) -> None:  # (B, 2): seek and end frame per clip
        starts.append(float(progress[0, 0]) * fe.hop_length / SAMPLE_RATE)
        if len(starts) > budget:
            raise _Stalled

    # The prompt with timestamps is 3 tokens; 4 keeps the same cap as short-form decoding.
    cap = min(model.generation_config.max_length - 4, max_new_tokens_for(30.0, options.tokens_per_second))
    try:
        with torch.no_grad(), backbone.autocast():
            out = model.generate(
                input_features=features,
                attention_mask=feats.attention_mask.to(backbone.device),  # (1, frames)
                language=[language],
                task=options.task,
                num_beams=options.beam_size,
                max_new_tokens=cap,
                return_timestamps=True,
                return_segments=True,
                monitor_progress=count_window,
            )
    except _Stalled:
        return _decode_fixed_windows(backbone, audio, language, options)
    first_special = processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    content = [t for t in out["sequences"][0].tolist() if t < first_special]
    # A segment's "result" is its window's whole decoded row: no <|endoftext|> means the window hit the cap.
    rows = {id(seg["result"]): seg["result"] for seg in out["segments"][0]}
    hit_cap = any(first_special not in row.tolist() for row in rows.values())
    text = _decode_text(processor, content).strip()
    segments, source = (), None
    if options.timestamps is not None:
        begin = processor.tokenizer.convert_tokens_to_ids("<|0.00|>")
        decode = functools.partial(_decode_text, processor)
        segments, source = long_form_segments(
            out["segments"][0],
            starts,
            begin,
            first_special,
            decode,
            text,
            seconds,
            options.timestamps == MODEL,
        )
    return Transcript(
        text=text,
        language=language,
        tokens=tuple(content),
        hit_token_cap=hit_cap,
        repetition_loop=has_repetition_loop(content),
        long_form=True,
        seconds=seconds,
        segments=segments,
        timestamps=source,
    )


def _decode_fixed_windows(
    backbone: Backbone, audio: np.ndarray, language: str, options: DecodingOptions
) -> Transcript:
    """Back-to-back 30 s windows, each decoded without timestamps: no seeking, so it cannot stall."""
    window = backbone.processor.feature_extractor.n_samples
    pieces = [audio[i : i + window] for i in range(0, len(audio), window)]
    parts: list[Transcript] = []
    plain = dataclasses.replace(options, timestamps=None)  # the model's timestamps are what stalled
    for start in range(0, len(pieces), options.batch_size):
        batch = pieces[start : start + options.batch_size]
        parts += _decode_batch(backbone, batch, [language] * len(batch), plain)
    tokens = tuple(t for part in parts for t in part.tokens)
    segments, source = (), None
    if options.timestamps is not None:
        seconds = len(audio) / SAMPLE_RATE
        segments, source = fixed_window_segments([p.text for p in parts], window / SAMPLE_RATE, seconds)
    return Transcript(
        text=" ".join(part.text for part in parts if part.text),
        language=language,
        tokens=tokens,
        hit_token_cap=any(part.hit_token_cap for part in parts),
        repetition_loop=any(part.repetition_loop for part in parts),
        long_form=True,
        stalled=True,
        seconds=len(audio) / SAMPLE_RATE,
        segments=segments,
        timestamps=source,
    )


def transcribe(
    backbone: Backbone,
    audios: Sequence[np.ndarray],
    options: DecodingOptions = DecodingOptions(),
    languages: Sequence[str | None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    encoder_outputs: EncoderOutputs | None = None,
    adapter_names: Sequence[str] | None = None,
) -> list[Transcript]:
    """Transcribe 16 kHz mono arrays; returns transcripts in input order.

    `languages` forces a language per item (overrides `options.language`); None entries are detected.
    `encoder_outputs`, when given, replaces the encoder (e.g. outputs cached while training); it is
    only asked for clips within the 30 s window, as long clips are decoded long-form from their audio.
    `adapter_names` (one per clip, all within 30 s) routes each clip through its own adapter of a
    PeftModel in the same batch (`inference.routing.transcribe_routed`).
    """
    known = backbone.languages
    if languages is None:
        languages = [options.language] * len(audios)
    languages = [normalise_language(lang, known) if lang else None for lang in languages]
    window = backbone.processor.feature_extractor.n_samples
    results: list[Transcript | None] = [None] * len(audios)
    short = []
    for i, audio in enumerate(audios):
        if len(audio) <= window:
            short.append(i)
            continue
        if adapter_names is not None:  # the long-form loop drops rows: names would not line up
            raise ValueError(
                "adapter_names: only for clips within 30 s; route long clips one adapter at a time"
            )
        results[i] = _decode_long(backbone, audio, languages[i], options)
        if on_batch is not None:
            on_batch(1)
    order = sorted(short, key=lambda i: len(audios[i]))
    for start in range(0, len(order), options.batch_size):
        chunk = order[start : start + options.batch_size]
        hidden = encoder_outputs(chunk) if encoder_outputs is not None else None
        names = [adapter_names[i] for i in chunk] if adapter_names is not None else None
        batch = _decode_batch(
            backbone, [audios[i] for i in chunk], [languages[i] for i in chunk], options, hidden, names
        )
        for i, transcript in zip(chunk, batch, strict=True):
            results[i] = transcript
        if on_batch is not None:
            on_batch(len(chunk))
    return results  # type: ignore[return-value]
