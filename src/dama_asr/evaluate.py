"""Evaluate a Whisper (with or without adapters) on a manifest: WER/CER per language, raw and normalised.

Every item is scored or skipped with a reason. A skipped item leaves the denominator, so the WER of
the rest is optimistic: callers bound how many may be skipped (`max_skipped`), scoring nothing is an
error, and a result holding a non-finite number is never written.

An adapter set decodes each utterance with the adapter of its manifest language (route "given") or of
the language the base Whisper detects among the set's (route "whisper-lid"; `inference.routing`, whose
docstring says what happens to languages outside the set). WER is always grouped by the manifest's.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from dama_asr.accounting import SkippedItems
from dama_asr.adapters.mole import mole_of
from dama_asr.atomic import atomic_write_text
from dama_asr.backbone.loading import Backbone
from dama_asr.data.audio import AudioError, load_audio
from dama_asr.data.manifest import Utterance
from dama_asr.errors import DamaError
from dama_asr.inference.decoding import (
    SUSPICIOUS_REASONS,
    DecodingOptions,
    EncoderOutputs,
    Transcript,
    transcribe,
)
from dama_asr.languages import UnknownLanguageError, normalise_language
from dama_asr.scoring import NORMALISERS, ErrorCounts, char_errors, number_words_language, word_errors

log = logging.getLogger(__name__)

# Skip reasons: stable strings, since results and studies count items by them.
EMPTY_REFERENCE = "empty reference"
EMPTY_AFTER_NORMALISATION = "reference empty after normalisation"
UNREADABLE_AUDIO = "unreadable audio"


class EvaluationError(DamaError, ValueError):
    """An evaluation whose numbers would mislead: nothing scored, too many skipped, a non-finite result."""


@dataclass(frozen=True)
class ScoredUtterance:
    """One scored item. `language`: the manifest's (results are grouped by it); `decoded_language`:
    the one the model decoded in (the manifest's when forced, else detected).  wer/cer: Whisper-normalised.
    `suspicious_reasons`: the rules its output broke (transcribe.SUSPICIOUS_REASONS).
    `detected_language`: an adapter set's detected route language (route "whisper-lid"), else None."""

    id: str
    language: str
    reference: str
    hypothesis: str
    wer: float
    cer: float
    suspicious: bool
    long_form: bool = False
    suspicious_reasons: list[str] = field(default_factory=list)  # a list: the result is JSON
    decoded_language: str | None = None
    detected_language: str | None = None


def _rates(items: list[ScoredUtterance], normaliser: str) -> dict:
    norm = NORMALISERS[normaliser]
    words, chars = ErrorCounts(), ErrorCounts()
    for u in items:
        ref, hyp = norm(u.reference, u.language), norm(u.hypothesis, u.language)
        words += word_errors(ref, hyp)
        chars += char_errors(ref, hyp)
    return {
        "wer": words.rate,
        "cer": chars.rate,
        "ref_words": words.reference_length,
        "word_errors": words.errors,
    }


def capped_wer(utterances: list[dict], normaliser: str) -> float:
    """Corpus WER with each utterance's word errors capped at its reference length: a hypothesis that
    loops to the token cap counts as that utterance wholly wrong, not as hundreds of insertions that
    outweigh every other utterance. For choosing among checkpoints on a small dev set, where one such
    loop moves the plain WER by 10-30 points; reported WERs stay plain. `utterances`: the result's
    "utterances" (reference, hypothesis, language)."""
    norm = NORMALISERS[normaliser]
    errors = words = 0
    for u in utterances:
        counts = word_errors(norm(u["reference"], u["language"]), norm(u["hypothesis"], u["language"]))
        errors += min(counts.errors, counts.reference_length)
        words += counts.reference_length
    if not words:
        raise EvaluationError("no reference words to score: a WER over nothing is not a number")
    return errors / words


def _reason_counts(items: list[ScoredUtterance]) -> dict[str, int]:
    counts = dict.fromkeys(SUSPICIOUS_REASONS, 0)
    for u in items:
        for reason in u.suspicious_reasons:
            counts[reason] = counts.get(reason, 0) + 1
    return counts


def summarise(scored: list[ScoredUtterance], worst: int = 5) -> dict:
    """Corpus-level WER/CER (total errors / total reference length) per language and overall.

    "suspicious" counts utterances flagged by any rule, "suspicious_reasons" by each rule (an
    utterance may break several)."""
    if not scored:
        raise EvaluationError("no scored utterances to summarise: a WER over nothing is not a number")
    groups: dict[str, list[ScoredUtterance]] = defaultdict(list)
    for item in scored:
        groups[item.language].append(item)
    groups_with_all = {**dict(sorted(groups.items())), "all": scored}
    summary = {}
    for name, items in groups_with_all.items():
        summary[name] = {
            "utterances": len(items),
            "suspicious": sum(u.suspicious for u in items),
            "suspicious_reasons": _reason_counts(items),
            **{normaliser: _rates(items, normaliser) for normaliser in NORMALISERS},
        }
    ranked = sorted(scored, key=lambda u: (u.wer, u.cer), reverse=True)
    return {"by_language": summary, "worst": [asdict(u) for u in ranked[:worst]]}


def parse_max_skipped(value: int | float | str | None) -> int | float | None:
    """How many items may be skipped: 3 or "3" -> at most 3 items; 0.05 or "5%" -> at most 5 % of
    them (a float is a fraction, an int a count); None -> no limit."""
    if value is None:
        return None
    limit: int | float | None = None
    if isinstance(value, str):
        text = value.strip()
        try:
            limit = float(text[:-1]) / 100 if text.endswith("%") else int(text)
        except ValueError:
            limit = None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        limit = value
    if limit is None or not math.isfinite(limit) or limit < 0 or (isinstance(limit, float) and limit > 1):
        raise EvaluationError(
            f"max_skipped {value!r} is neither a number of items (such as 3) nor a percentage of "
            "them (such as 5%)"
        )
    return limit


def _describe_limit(limit: int | float) -> str:
    return f"at most {limit} item(s)" if isinstance(limit, int) else f"at most {limit * 100:g}% of the items"


def _check_skipped(skipped: SkippedItems, total: int, max_skipped, source: str) -> None:
    """Raise before any decoding when the skipped items would make the WER of the rest misleading."""
    if skipped.total == total:
        raise EvaluationError(
            f"{source}: nothing to score, all {total} item(s) were skipped. {skipped.describe()}. "
            "Fix the manifest's audio paths and transcripts"
        )
    limit = parse_max_skipped(max_skipped)
    if limit is None or skipped.total == 0:
        return
    over = skipped.total > limit if isinstance(limit, int) else skipped.total / total > limit
    if over:
        raise EvaluationError(
            f"{source}: {skipped.total} of {total} item(s) skipped ({skipped.total / total:.1%}), but "
            f"max_skipped allows {_describe_limit(limit)}: {skipped.describe()}. Skipped items leave the "
            "WER's denominator; fix or remove them, or allow them with `dama eval --max-skipped N` "
            "(or P%)"
        )


def _manifest_line(manifest: str | Path, item_id: str) -> int | None:
    """The line of `manifest` that describes `item_id`, for messages (only read on an error)."""
    try:
        lines = Path(manifest).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line_no, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and str(record.get("id") or Path(str(record.get("audio"))).stem) == str(
            item_id
        ):
            return line_no
    return None


def _check_languages(backbone: Backbone, items: list[Utterance], manifest: str | Path | None) -> None:
    """Forced languages must be ones the model has tokens for; raise naming the first item that is not."""
    known = backbone.languages
    bad = []
    for position, item in enumerate(items):
        try:
            normalise_language(item.language, known)
        except UnknownLanguageError:
            bad.append((position, item))
    if not bad:
        return
    position, item = bad[0]
    line = _manifest_line(manifest, item.id) if manifest is not None else None
    where = f"{manifest}:{line}" if line else f"item {position + 1}" + (f" of {manifest}" if manifest else "")
    others = sorted({other.language for _, other in bad[1:]})
    more = (
        f" ({len(bad) - 1} more item(s) with such languages: {', '.join(map(repr, others))})"
        if others
        else ""
    )
    raise UnknownLanguageError(
        f"utterance {item.id!r} ({where}): language {item.language!r} is not one this model knows{more}; "
        f"its codes are: {', '.join(sorted(known))}. Fix the manifest's language field, or pass "
        "--detect-language (force_language=False) to let the model detect it"
    )


def _load_items(items: list[Utterance], skipped: SkippedItems) -> tuple[list[Utterance], list]:
    kept, audios = [], []
    for item in tqdm(items, desc="loading audio", unit="utt", leave=False):
        if not item.text.strip():
            skipped.add(EMPTY_REFERENCE, item.id)
            continue
        # "..." or "[music]" has no words once normalised: its WER would be 0/0 or n/0.
        if not all(norm(item.text, item.language).split() for norm in NORMALISERS.values()):
            skipped.add(EMPTY_AFTER_NORMALISATION, f"{item.id} {item.text!r}")
            continue
        try:
            audios.append(load_audio(item.audio, max_seconds=None))  # over 30 s: decoded long-form
        except AudioError as err:
            skipped.add(UNREADABLE_AUDIO, str(err))
            continue
        kept.append(item)
    return kept, audios


def _cached_encoder_lookup(
    backbone: Backbone, kept: list[Utterance], audios: list, batch_size: int
) -> EncoderOutputs | None:
    """The encoder cache holds 30 s windows: cache the short clips, look them up by position in `kept`."""
    from dama_asr.features.encoder_cache import cached_encoder_outputs

    window = backbone.processor.feature_extractor.n_samples
    short = [i for i, audio in enumerate(audios) if len(audio) <= window]
    if not short:
        return None
    lookup = cached_encoder_outputs(backbone, [kept[i] for i in short], batch_size)
    index_in_cache = {position: j for j, position in enumerate(short)}
    return lambda positions: lookup([index_in_cache[i] for i in positions])


def _check_set_route(
    backbone: Backbone, items: list[Utterance], force_language: bool, route: str, source: str
) -> None:
    """Before any audio is read: the route fits the model, and under "given" the set covers the items."""
    from dama_asr.inference.routing import GIVEN, LANGUAGE_ROUTES, check_set_covers

    if route not in LANGUAGE_ROUTES:
        raise EvaluationError(f"route {route!r}: one of {', '.join(LANGUAGE_ROUTES)}")
    if not backbone.routes_by_language:
        raise EvaluationError(f"route {route!r} picks an adapter set's adapter; load a set (--adapter-set)")
    if not force_language:
        raise EvaluationError(
            f"{source}: an adapter set routes each utterance by its manifest language or by Whisper's "
            "detection (--route whisper-lid); drop --detect-language"
        )
    if route == GIVEN:
        check_set_covers(backbone, [u.language for u in items], [u.id for u in items], source)


MOLE_ROUTES = ("given", "router")


def _check_mole_route(mole, items: list[Utterance], force_language: bool, route: str, source: str) -> None:
    """A MoLE routes by the manifest's language ("given", language-aware) or by its own router."""
    if route not in MOLE_ROUTES:
        raise EvaluationError(f"route {route!r}: a MoLE routes by {' or '.join(MOLE_ROUTES)}")
    if route == "given":
        if not force_language:
            raise EvaluationError(f"{source}: a language-agnostic MoLE evaluation is --route router")
        mole.index_of(sorted({u.language for u in items}))  # an expert for every language, or one error


def _transcribe_mole(backbone: Backbone, kept: list[Utterance], audios: list, route: str, options) -> tuple:
    """MoLE transcripts and the routing record: under "router", its accuracy and confusion by true language."""
    from dama_asr.inference.mole_decoding import transcribe_mole

    given = [u.language for u in kept] if route == "given" else None
    with tqdm(total=len(kept), desc=f"transcribing (MoLE, route {route})", unit="utt") as bar:
        transcripts = transcribe_mole(backbone, audios, given, options, on_batch=bar.update)
    confusion: dict[str, dict[str, int]] = {}
    for item, tr in zip(kept, transcripts, strict=True):
        row = confusion.setdefault(item.language, {})
        row[tr.language] = row.get(tr.language, 0) + 1
    right = sum(1 for item, tr in zip(kept, transcripts, strict=True) if tr.language == item.language)
    return transcripts, {
        "route": route,
        "accuracy": right / len(kept) if kept and route != "given" else None,  # given: routed by definition
        "confusion": confusion,
    }


def _decoding_record(options: DecodingOptions, transcripts: list[Transcript], force_language: bool) -> dict:
    """The options, with the language(s) actually decoded in, not the per-run option (None when each
    item's own language was forced)."""
    used: dict[str, int] = defaultdict(int)
    for tr in transcripts:
        used[tr.language] += 1
    codes = sorted(used)
    return {
        **asdict(options),
        "language": codes[0] if len(codes) == 1 else codes,
        "language_source": "manifest" if force_language else "detected",
        "languages_decoded": dict(sorted(used.items())),
    }


def _number_words_record(scored: list[ScoredUtterance]) -> dict:
    """Which languages the lenient normaliser spelled numbers out in (num2words), and which kept digits."""
    languages = sorted({u.language for u in scored})
    spelled = [lang for lang in languages if number_words_language(lang)]
    return {
        "normaliser": "lenient",
        "spelled_out": spelled,
        "digits_kept": [lang for lang in languages if lang not in spelled],
    }


def evaluate_items(
    backbone: Backbone,
    items: list[Utterance],
    options: DecodingOptions = DecodingOptions(),
    force_language: bool = True,
    reuse_encoder_outputs: bool = False,
    max_skipped: int | float | str | None = None,
    manifest: str | Path | None = None,
    route: str = "given",
) -> dict:
    """Transcribe and score `items`; bad items are skipped and counted, within `max_skipped`.

    Items are skipped for an empty reference (also when empty after normalisation, "...") or unreadable
    audio; clips over 30 s are decoded long-form, not skipped. `max_skipped` bounds them: an int is a
    count, a float a fraction of the items, a string "3" or "5%" either (`parse_max_skipped`); None = no
    limit. Going over it, scoring nothing, or forcing a language the model lacks raises (EvaluationError,
    UnknownLanguageError) before anything is transcribed. `manifest`, the file the items came from,
    only names it (and the line of an item) in those errors.

    `reuse_encoder_outputs`: take encoder outputs from the on-disk encoder cache (filling it first),
    for models whose encoder is frozen and that are scored on the same audio again and again (dev WER
    every epoch, a study's test set in every cell). The cache holds float16, so hypotheses can differ
    very slightly from a float32 encoder pass.

    `route`, for an adapter set: "given" (the manifest's language picks the adapter) or "whisper-lid"
    (Whisper's detection among the set's languages does); the result then holds "routing" as
    `inference.routing.transcribe_set` records it (under "whisper-lid": "accuracy", "confusion" {true:
    {detected: n}}, "outside_set"), and each utterance its "detected_language".

    The result, besides the scores ("by_language", "worst", "utterances"), holds the stable keys
    "items_total" (items given) and "skipped": {"total", "counts" (by reason), "examples" (by reason,
    the first five), "fraction" (total / items_total), "max_skipped" (as given)}, "long_form":
    {"utterances" decoded long-form, "stalled" (of those, decoded in fixed windows instead)},
    "decoding" (the options, with "language": the code decoded in, or the sorted codes when several,
    "language_source": "manifest" or "detected", "languages_decoded": utterances per code), and
    "number_words": {"spelled_out", "digits_kept"}: the languages whose numbers the lenient normaliser
    spelled out and those it left as digits (no num2words converter).
    """
    source = str(manifest) if manifest is not None else "the items"
    if not items:
        raise EvaluationError(f"{source}: no items to evaluate; the manifest is empty")
    parse_max_skipped(max_skipped)  # a bad limit fails before any audio is read
    if force_language:
        _check_languages(backbone, items, manifest)
    mole = mole_of(backbone.model)
    if mole is not None:
        _check_mole_route(mole, items, force_language, route, source)
    elif backbone.routes_by_language or route != "given":
        _check_set_route(backbone, items, force_language, route, source)
    skipped = SkippedItems()
    kept, audios = _load_items(items, skipped)
    _check_skipped(skipped, len(items), max_skipped, source)
    languages = [u.language if force_language else None for u in kept]
    encoder_outputs = (
        _cached_encoder_lookup(backbone, kept, audios, options.batch_size) if reuse_encoder_outputs else None
    )
    routing = None
    if mole is not None:
        transcripts, routing = _transcribe_mole(backbone, kept, audios, route, options)
    elif backbone.routes_by_language:
        # An adapter set: each utterance is decoded by its manifest or detected language's adapter.
        from dama_asr.inference.routing import transcribe_set

        transcripts, routing = transcribe_set(backbone, audios, languages, options, by=route)
    else:
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
                long_form=tr.long_form,
                suspicious_reasons=list(tr.suspicious_reasons),
                decoded_language=tr.language,
                detected_language=tr.language if route == "whisper-lid" else None,
            )
        )
    seconds = sum(len(a) for a in audios) / 16_000
    return {
        "model": backbone.name,
        "decoding": _decoding_record(options, transcripts, force_language and route == "given"),
        "precision": backbone.precision,
        "audio_seconds": seconds,
        **summarise(scored),
        "items_total": len(items),
        "skipped": {**skipped.to_dict(of=len(items)), "max_skipped": max_skipped},
        "long_form": {
            "utterances": sum(tr.long_form for tr in transcripts),
            "stalled": sum(tr.stalled for tr in transcripts),
        },
        "number_words": _number_words_record(scored),
        **({"routing": routing} if routing is not None else {}),
        "utterances": [asdict(u) for u in scored],
    }


# (result key, column title) of each normaliser in the table; a result from before "lenient" lacks it.
_TABLE_NORMALISERS = (
    ("raw", "raw"),
    ("whisper", "norm"),
    ("script_safe", "script-safe"),
    ("lenient", "lenient"),
)


def describe_suspicious(counts: dict[str, int]) -> str:
    """'runaway 2, too long for its audio 1' from a "suspicious_reasons" count; 'none' when all are 0."""
    return ", ".join(f"{reason} {n}" for reason, n in counts.items() if n) or "none"


def markdown_table(result: dict) -> str:
    """Rates per language and normaliser, then a line naming the rules behind the suspicious count."""
    columns = [(key, title) for key, title in _TABLE_NORMALISERS if key in result["by_language"]["all"]]
    head = "".join(f" WER {title} | CER {title} |" for _, title in columns)
    lines = [f"| language | utts |{head} suspicious |", "|---|---:|" + "---:|---:|" * len(columns) + "---:|"]
    for lang, s in result["by_language"].items():
        rates = "".join(f" {s[key]['wer']:.1%} | {s[key]['cer']:.1%} |" for key, _ in columns)
        lines.append(f"| {lang} | {s['utterances']} |{rates} {s['suspicious']} |")
    reasons = result["by_language"]["all"].get("suspicious_reasons")
    if reasons is not None:
        lines.append(
            f"\nsuspicious, by rule: {describe_suspicious(reasons)} (runaway: hit the token cap; loop: "
            "repeats itself; too long for its audio: more letters than its seconds of speech can hold; "
            "long-form stalled: decoded in fixed windows)"
        )
    return "\n".join(lines)


def _non_finite_key(value, path: str = "result") -> str | None:
    """The path of the first inf/nan in a result, for the message."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    children = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    for key, child in children:
        found = _non_finite_key(child, f"{path}[{key!r}]")
        if found:
            return found
    return None


def write_result(result: dict, out_json: Path) -> Path:
    """Write the result JSON and its markdown table; a non-finite number is an error, not `Infinity`."""
    try:
        text = json.dumps(result, indent=2, ensure_ascii=False, allow_nan=False)
    except ValueError as err:
        raise EvaluationError(
            f"{out_json}: not written, {_non_finite_key(result) or 'a value'} is not a finite number (JSON has no "
            "inf or nan); this is a scoring bug, please report it with the manifest"
        ) from err
    atomic_write_text(out_json, text)
    atomic_write_text(out_json.with_suffix(".md"), markdown_table(result) + "\n")
    return out_json
