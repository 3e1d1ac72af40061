"""Decoding a CTranslate2 export (`dama export --format ct2`): with CTranslate2 itself, or faster-whisper.

CTranslate2 has no adapters, so each language is its own converted model; an exported set holds one
folder per language, listed in its export_index.json (`resolve_model_folder`). `Ct2Whisper` computes
the log-mel features with the folder's own feature extractor (preprocessor_config.json) and prompts
the decoder as `dama eval` decodes, `<|startoftranscript|><|xx|><|transcribe|><|notimestamps|>`, with
the same suppressions (CTranslate2 reads them from its config.json) and per-clip token caps, so its
greedy tokens are the merged transformers model's. A file over 30 s is cut into back-to-back 30 s
windows (no seeking, no timestamp tokens): its segments are those windows.

faster-whisper (`pip install 'dama-asr[deploy]'`) runs the same folder with its own long-form
algorithm and the model's timestamps (`transcribe_faster_whisper`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from dama_asr.data.audio import SAMPLE_RATE
from dama_asr.errors import DamaError
from dama_asr.features.log_mel import log_mel
from dama_asr.inference.decoding import DecodingOptions, Transcript, max_new_tokens_for
from dama_asr.inference.segments import MODEL, Segment, fixed_window_segments, joined_text, whole_clip
from dama_asr.languages import normalise_language
from dama_asr.scoring import has_repetition_loop

# Written by `dama export` (dama_asr.export.api, a layer above this one: the names are repeated here).
EXPORT_INDEX = "export_index.json"
EXPORT_RECORD = "dama_export.json"
DEPLOY_HINT = "pip install 'dama-asr[deploy]'"
DECODER_MAX_LENGTH = 448  # every Whisper's max_target_positions


class Ct2EngineError(DamaError, ValueError):
    """A folder that is not a CTranslate2 Whisper, or a language it cannot decode."""


def resolve_model_folder(folder: str | Path, language: str | None) -> tuple[Path, str | None]:
    """(model folder, language to force) for a CTranslate2 export or an exported set.

    A set (export_index.json) needs `language`, which picks its folder. A single export decodes in
    `language`, else the language it was exported for (its dama_export.json), else None: detect.
    """
    folder = Path(folder)
    index_path = folder / EXPORT_INDEX
    if index_path.is_file():
        index = json.loads(index_path.read_text(encoding="utf-8"))
        held = index.get("languages", {})
        if index.get("export_format") != "ct2":
            raise Ct2EngineError(
                f"{folder}: an exported set in format {index.get('export_format')!r}; "
                "the ct2 engine reads a `dama export --format ct2` set"
            )
        if language is None:
            raise Ct2EngineError(
                f"{folder}: an exported set of one model per language ({', '.join(held)}); give --language "
                "to choose one"
            )
        code = language if language in held else normalise_language(language)
        if code not in held:
            raise Ct2EngineError(
                f"{folder}: the exported set has no {code!r} model; it holds {', '.join(held)}"
            )
        return folder / held[code]["folder"], code
    if not (folder / "model.bin").is_file():
        raise Ct2EngineError(
            f"{folder}: not a CTranslate2 model folder (no model.bin); write one with `dama export --format ct2`"
        )
    record = folder / EXPORT_RECORD
    if language is None and record.is_file():
        language = json.loads(record.read_text(encoding="utf-8")).get("language")
    return folder, language


class Ct2Whisper:
    """A CTranslate2 Whisper folder with its feature extractor and tokenizer (both from the folder)."""

    def __init__(self, folder: str | Path, compute_type: str = "default", device: str = "cpu") -> None:
        try:
            import ctranslate2
        except ImportError:
            raise Ct2EngineError(f"--engine ct2 needs ctranslate2: {DEPLOY_HINT}") from None
        from tokenizers import Tokenizer
        from transformers import WhisperFeatureExtractor

        self.folder = Path(folder)
        for name in ("model.bin", "tokenizer.json", "preprocessor_config.json"):
            if not (self.folder / name).is_file():
                raise Ct2EngineError(f"{self.folder}: no {name}; `dama export --format ct2` writes one")
        kind, _, index = device.partition(":")
        self.model = ctranslate2.models.Whisper(
            str(self.folder),
            device=kind,
            device_index=int(index or 0),
            compute_type=compute_type,
            inter_threads=1,
            intra_threads=torch.get_num_threads(),
        )
        self.feature_extractor = WhisperFeatureExtractor.from_pretrained(self.folder)
        self.tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        config = json.loads((self.folder / "config.json").read_text(encoding="utf-8"))
        self.languages = {self.tokenizer.id_to_token(i).strip("<|>") for i in config.get("lang_ids", [])}
        self.end_of_text = self._id("<|endoftext|>")
        # Whisper's decoder length (prompt included), as `dama export` recorded it; whisper's 448 else.
        record = self.folder / EXPORT_RECORD
        ct2 = json.loads(record.read_text(encoding="utf-8")).get("ct2_config", {}) if record.is_file() else {}
        self.max_length = int(ct2.get("max_length") or DECODER_MAX_LENGTH)

    def _id(self, token: str) -> int:
        found = self.tokenizer.token_to_id(token)
        if found is None:
            raise Ct2EngineError(f"{self.folder / 'tokenizer.json'}: no {token} token")
        return found

    def prompt(self, language: str, task: str = "transcribe") -> list[int]:
        """<|startoftranscript|><|xx|><|task|><|notimestamps|>, as token ids."""
        tokens = ["<|startoftranscript|>", f"<|{language}|>", f"<|{task}|>", "<|notimestamps|>"]
        return [self._id(t) for t in tokens]

    def detect_languages(self, audios: Sequence[np.ndarray], batch_size: int = 8) -> list[str]:
        """The most likely language of each clip's first 30 s (CTranslate2's detect_language)."""
        import ctranslate2

        window = self.feature_extractor.n_samples
        found: list[str] = []
        for start in range(0, len(audios), batch_size):
            chunk = [a[:window] for a in audios[start : start + batch_size]]
            view = ctranslate2.StorageView.from_array(log_mel(self.feature_extractor, chunk).numpy())
            found += [ranked[0][0].strip("<|>") for ranked in self.model.detect_language(view)]
        return found

    def _decode_windows(
        self, pieces: Sequence[np.ndarray], languages: Sequence[str], options: DecodingOptions
    ) -> list[tuple[list[int], bool]]:
        """(content tokens, hit its cap) per window of <= 30 s, in input order."""
        import ctranslate2

        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))  # similar caps per batch
        out: list[tuple[list[int], bool] | None] = [None] * len(pieces)
        for start in range(0, len(order), options.batch_size):
            chunk = order[start : start + options.batch_size]
            # As `transcribe` caps: by duration, and within the decoder's length less the 4-token prompt.
            caps = [
                min(
                    self.max_length - 4,
                    max_new_tokens_for(len(pieces[i]) / SAMPLE_RATE, options.tokens_per_second),
                )
                for i in chunk
            ]
            features = log_mel(self.feature_extractor, [pieces[i] for i in chunk]).numpy()  # (B, mels, 3000)
            results = self.model.generate(
                ctranslate2.StorageView.from_array(np.ascontiguousarray(features)),
                [self.prompt(languages[i], options.task) for i in chunk],
                beam_size=options.beam_size,
                # CTranslate2 generates at most max_length // 2 tokens (openai-whisper's sample_len).
                max_length=2 * max(caps),
            )
            for i, cap, result in zip(chunk, caps, results, strict=True):
                ids = result.sequences_ids[0]  # without <|endoftext|>
                generated = ids[:cap]  # each clip keeps its own duration budget, as in `transcribe`
                content = [t for t in generated if t < self.end_of_text]
                out[i] = (content, len(generated) >= cap)
        return out  # type: ignore[return-value]

    def transcribe(
        self,
        audios: Sequence[np.ndarray],
        options: DecodingOptions = DecodingOptions(),
        languages: Sequence[str | None] | None = None,
    ) -> list[Transcript]:
        """Transcripts of 16 kHz mono arrays in input order; like `inference.decoding.transcribe`,
        `languages` forces one per clip (None entries are detected) and `options.timestamps` asks for
        segments, here always the windows (no timestamp tokens are decoded)."""
        if languages is None:
            languages = [options.language] * len(audios)
        known = self.languages or None  # an English-only model lists none
        langs = [normalise_language(lang, known) if lang else None for lang in languages]
        missing = [i for i, lang in enumerate(langs) if lang is None]
        if missing:
            detected = self.detect_languages([audios[i] for i in missing], options.batch_size)
            for i, lang in zip(missing, detected, strict=True):
                langs[i] = lang
        window = self.feature_extractor.n_samples
        owners, pieces = [], []
        for n, audio in enumerate(audios):
            for start in range(0, max(len(audio), 1), window):
                owners.append(n)
                pieces.append(audio[start : start + window])
        decoded = self._decode_windows(pieces, [langs[n] for n in owners], options)  # type: ignore[misc]
        per_clip: list[list[tuple[list[int], bool]]] = [[] for _ in audios]
        for n, window_result in zip(owners, decoded, strict=True):
            per_clip[n].append(window_result)
        return [
            self._transcript(audio, lang, windows, options)  # type: ignore[arg-type]
            for audio, lang, windows in zip(audios, langs, per_clip, strict=True)
        ]

    def _transcript(
        self,
        audio: np.ndarray,
        language: str,
        windows: list[tuple[list[int], bool]],
        options: DecodingOptions,
    ) -> Transcript:
        seconds = len(audio) / SAMPLE_RATE
        texts = [self.tokenizer.decode(tokens, skip_special_tokens=True).strip() for tokens, _ in windows]
        tokens = tuple(t for toks, _ in windows for t in toks)
        text = " ".join(t for t in texts if t)
        segments: tuple[Segment, ...] = ()
        source = None
        if options.timestamps is not None:
            if len(windows) == 1:
                segments, source = whole_clip(text, seconds)
            else:
                window = self.feature_extractor.n_samples / SAMPLE_RATE
                segments, source = fixed_window_segments(texts, window, seconds)
        return Transcript(
            text=text,
            language=language,
            tokens=tokens,
            hit_token_cap=any(hit for _, hit in windows),
            repetition_loop=any(has_repetition_loop(toks) for toks, _ in windows),
            long_form=len(windows) > 1,
            seconds=seconds,
            segments=segments,
            timestamps=source,
        )


def transcribe_faster_whisper(
    folder: str | Path,
    audios: Sequence[np.ndarray],
    options: DecodingOptions = DecodingOptions(),
    compute_type: str = "default",
    device: str = "cpu",
) -> list[Transcript]:
    """Transcripts by faster-whisper's `WhisperModel` on a CTranslate2 folder, with its segments
    (timed by the model's timestamp tokens) whatever `options.timestamps` says."""
    WhisperModel = faster_whisper_model_class()
    folder = Path(folder)
    kind, _, index = device.partition(":")
    model = WhisperModel(
        str(folder),
        device=kind,
        device_index=int(index or 0),
        compute_type=compute_type,
        cpu_threads=torch.get_num_threads(),
    )
    from tokenizers import Tokenizer

    end_of_text = Tokenizer.from_file(str(folder / "tokenizer.json")).token_to_id("<|endoftext|>")
    results = []
    for audio in audios:
        found, info = model.transcribe(
            audio, language=options.language, task=options.task, beam_size=options.beam_size
        )
        found = list(found)  # decoding runs as the segments are read
        segments = tuple(Segment(float(s.start), float(s.end), s.text) for s in found)
        tokens = tuple(t for s in found for t in s.tokens if t < end_of_text)
        seconds = len(audio) / SAMPLE_RATE
        results.append(
            Transcript(
                text=joined_text(segments),
                language=info.language,
                tokens=tokens,
                hit_token_cap=False,  # faster-whisper applies its own fallbacks
                repetition_loop=has_repetition_loop(list(tokens)),
                long_form=seconds > 30,
                seconds=seconds,
                segments=tuple(s for s in segments if s.text.strip()),
                timestamps=MODEL,
            )
        )
    return results


def faster_whisper_model_class():
    """faster_whisper.WhisperModel, or a one-line error saying how to install it."""
    try:
        from faster_whisper import WhisperModel
    except ImportError:
        raise Ct2EngineError(f"--engine faster-whisper needs faster-whisper: {DEPLOY_HINT}") from None
    return WhisperModel
