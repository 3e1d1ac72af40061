"""Evaluate a Whisper (with or without adapters) on a manifest: WER/CER per language, raw and normalised."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from dama_asr.atomic import atomic_write_text
from dama_asr.backbone.loading import Backbone
from dama_asr.data.audio import AudioError, load_audio
from dama_asr.data.manifest import Utterance
from dama_asr.scoring import NORMALISERS, ErrorCounts, char_errors, word_errors
from dama_asr.transcribe import DecodingOptions, transcribe

log = logging.getLogger(__name__)


@dataclass
class SkippedItems:
    """Items left out of scoring, counted by reason with the first few examples each."""

    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, reason: str, example: str, keep: int = 5) -> None:
        self.counts[reason] += 1
        if len(self.examples[reason]) < keep:
            self.examples[reason].append(example)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict:
        return {"total": self.total, "counts": dict(self.counts), "examples": dict(self.examples)}


@dataclass(frozen=True)
class ScoredUtterance:
    id: str
    language: str
    reference: str
    hypothesis: str
    wer: float
    cer: float
    suspicious: bool


def _rates(pairs: list[tuple[str, str]], normaliser: str) -> dict:
    norm = NORMALISERS[normaliser]
    words, chars = ErrorCounts(), ErrorCounts()
    for ref, hyp in pairs:
        words += word_errors(norm(ref), norm(hyp))
        chars += char_errors(norm(ref), norm(hyp))
    return {
        "wer": words.rate,
        "cer": chars.rate,
        "ref_words": words.reference_length,
        "word_errors": words.errors,
    }


def summarise(scored: list[ScoredUtterance], worst: int = 5) -> dict:
    """Corpus-level WER/CER (total errors / total reference length) per language and overall."""
    groups: dict[str, list[ScoredUtterance]] = defaultdict(list)
    for item in scored:
        groups[item.language].append(item)
    groups_with_all = {**dict(sorted(groups.items())), "all": scored}
    summary = {}
    for name, items in groups_with_all.items():
        pairs = [(u.reference, u.hypothesis) for u in items]
        summary[name] = {
            "utterances": len(items),
            "suspicious": sum(u.suspicious for u in items),
            **{normaliser: _rates(pairs, normaliser) for normaliser in NORMALISERS},
        }
    ranked = sorted(scored, key=lambda u: (u.wer, u.cer), reverse=True)
    return {"by_language": summary, "worst": [asdict(u) for u in ranked[:worst]]}


def _load_items(items: list[Utterance], skipped: SkippedItems) -> tuple[list[Utterance], list]:
    kept, audios = [], []
    for item in tqdm(items, desc="loading audio", unit="utt", leave=False):
        if not item.text.strip():
            skipped.add("empty reference", item.id)
            continue
        try:
            audios.append(load_audio(item.audio))
        except AudioError as err:
            skipped.add("unreadable audio", str(err))
            continue
        kept.append(item)
    return kept, audios


def evaluate_items(
    backbone: Backbone,
    items: list[Utterance],
    options: DecodingOptions = DecodingOptions(),
    force_language: bool = True,
    reuse_encoder_outputs: bool = False,
) -> dict:
    """Transcribe and score; bad items are skipped and counted, never fatal.

    `reuse_encoder_outputs`: take encoder outputs from the on-disk encoder cache (filling it first),
    for models whose encoder is frozen and that are scored on the same audio again and again (dev WER
    every epoch, a study's test set in every cell). The cache holds float16, so hypotheses can differ
    very slightly from a float32 encoder pass.
    """
    skipped = SkippedItems()
    kept, audios = _load_items(items, skipped)
    languages = [u.language if force_language else None for u in kept]
    encoder_outputs = None
    if reuse_encoder_outputs and kept:
        from dama_asr.train.encoder_cache import cached_encoder_outputs

        encoder_outputs = cached_encoder_outputs(backbone, kept, options.batch_size)
    with tqdm(total=len(kept), desc="transcribing", unit="utt") as bar:
        transcripts = transcribe(
            backbone,
            audios,
            options,
            languages=languages,
            on_batch=bar.update,
            encoder_outputs=encoder_outputs,
        )
    scored = []
    for item, tr in zip(kept, transcripts, strict=True):
        ref, hyp = NORMALISERS["whisper"](item.text), NORMALISERS["whisper"](tr.text)
        scored.append(
            ScoredUtterance(
                id=item.id,
                language=item.language,
                reference=item.text,
                hypothesis=tr.text,
                wer=word_errors(ref, hyp).rate,
                cer=char_errors(ref, hyp).rate,
                suspicious=tr.suspicious,
            )
        )
    seconds = sum(len(a) for a in audios) / 16_000
    return {
        "model": backbone.name,
        "decoding": asdict(options),
        "precision": backbone.precision,
        "audio_seconds": seconds,
        **summarise(scored),
        "skipped": skipped.to_dict(),
        "utterances": [asdict(u) for u in scored],
    }


def markdown_table(result: dict) -> str:
    lines = [
        "| language | utts | WER raw | CER raw | WER norm | CER norm | WER script-safe | CER script-safe | suspicious |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lang, s in result["by_language"].items():
        lines.append(
            f"| {lang} | {s['utterances']} | {s['raw']['wer']:.1%} | {s['raw']['cer']:.1%} | "
            f"{s['whisper']['wer']:.1%} | {s['whisper']['cer']:.1%} | {s['script_safe']['wer']:.1%} | "
            f"{s['script_safe']['cer']:.1%} | {s['suspicious']} |"
        )
    return "\n".join(lines)


def write_result(result: dict, out_json: Path) -> Path:
    atomic_write_text(out_json, json.dumps(result, indent=2, ensure_ascii=False))
    atomic_write_text(out_json.with_suffix(".md"), markdown_table(result) + "\n")
    return out_json
