"""Natural sentences per language from Debian translation catalogues, filtered and cached.

    from dama_asr.data.sentences import load_sentences
    sentences = load_sentences("lt")   # fetches and unpacks the packages once, then reads the cache

The extracted text is cached under `$DAMA_HOME/sentences/` (never in the repository): each line holds the
sentence, the Debian package it came from and that package's licence.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dama_asr.accounting import SkippedItems
from dama_asr.atomic import atomic_write_text, file_lock
from dama_asr.data.sentences.filters import english_key, rejection_reason, split_sentences
from dama_asr.data.sentences.sources import SOURCES, Source, raw_strings
from dama_asr.paths import dama_home

# Bump when filters or sources change, so stale caches are rebuilt rather than silently reused.
CACHE_VERSION = 1


@dataclass(frozen=True)
class Sentence:
    text: str
    language: str
    source: str  # the Debian package
    licence: str


@dataclass
class Extraction:
    """Sentences kept for one language and why the others were dropped (counts and first examples)."""

    language: str
    sentences: list[Sentence] = field(default_factory=list)
    rejected: SkippedItems = field(default_factory=lambda: SkippedItems(keep_examples=3))

    def reject(self, reason: str, text: str) -> None:
        self.rejected.add(reason, text)


def sentence_cache(cache: Path | None = None) -> Path:
    return (cache or dama_home()) / "sentences" / f"v{CACHE_VERSION}"


def _package_for(source: Source, language: str) -> str:
    return source.package(language)


@functools.lru_cache(maxsize=4)
def english_reference(debian_cache: Path | None = None) -> frozenset[str]:
    """Keys of every English source string, for spotting entries left untranslated."""
    keys: set[str] = set()
    for source in SOURCES:
        for raw in raw_strings(source, "en", debian_cache):
            keys.update(english_key(s) for s in split_sentences(raw))
    return frozenset(keys)


def filter_strings(
    raw: list[tuple[str, str, str]], language: str, english: set[str] | frozenset[str] = frozenset()
) -> Extraction:
    """Split, filter and de-duplicate (text, source package, licence) triples for `language`."""
    result, seen = Extraction(language), set()
    for text, package, licence in raw:
        for candidate in split_sentences(text):
            reason = rejection_reason(candidate, language, english)
            if reason is None and candidate.casefold() in seen:
                reason = "duplicate"
            if reason:
                result.reject(reason, candidate)
                continue
            seen.add(candidate.casefold())
            result.sentences.append(Sentence(candidate, language, package, licence))
    return result


def extract_sentences(language: str, debian_cache: Path | None = None) -> Extraction:
    """Fetch the packages for `language` and return its filtered sentences (no caching)."""
    english = english_reference(debian_cache) if language != "en" else frozenset()
    raw = [
        (text, _package_for(source, language), source.licence)
        for source in SOURCES
        for text in raw_strings(source, language, debian_cache)
    ]
    return filter_strings(raw, language, english)


def load_sentences(language: str, refresh: bool = False, cache: Path | None = None) -> list[Sentence]:
    """Cached sentences for `language`, extracting them on first use."""
    folder = sentence_cache(cache)
    path = folder / f"{language}.jsonl"
    with file_lock(folder / f".{language}.lock"):
        if refresh or not path.is_file():
            extraction = extract_sentences(language)
            atomic_write_text(
                path,
                "".join(
                    json.dumps(asdict(s), ensure_ascii=False, allow_nan=False) + "\n"
                    for s in extraction.sentences
                ),
            )
            stats = {
                "kept": len(extraction.sentences),
                "rejected": dict(extraction.rejected.counts),
                "examples": extraction.rejected.examples,
            }
            atomic_write_text(
                folder / f"{language}.stats.json",
                json.dumps(stats, ensure_ascii=False, indent=1, allow_nan=False),
            )
    with open(path, encoding="utf-8") as f:
        return [Sentence(**json.loads(line)) for line in f if line.strip()]
