"""Does a transcript fit its audio? Characters per second, judged against the manifest's own items.

A transcript that belongs to another clip (a shifted TSV, a paragraph pasted for a 0.8 s clip, one
word for 20 s of speech) passes every per-item check. Its speaking rate gives it away: spoken
characters (letters and digits, any script) per second of audio, far from what the other items of
the same language and script show. Rates differ by script (a Han character is a syllable, a Latin
letter a fraction of one) and by corpus (read or spontaneous, trimmed or not), so the typical rate is
measured, never assumed: the median over the manifest's items of that language and script, with
their spread as a robust standard deviation (1.4826 x the median absolute deviation of log rates).
Outliers cannot move a median, so a tenth of mislabelled items does not hide itself.

A group too small to measure (fewer than `min_items`) is held to absolute bounds only, so a
three-clip manifest still flags 188 characters per second. Slow clips get an allowance for the
silence that clips carry at either end, so only transcripts far too short for the audio are flagged.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from dama_asr.data.manifest import Utterance
from dama_asr.data.scripts import dominant_script


@dataclass(frozen=True)
class RateOptions:
    min_items: int = 10  # fewer items of a language and script: absolute bounds only
    spread: float = 3.5  # robust standard deviations of log rate from the median that are implausible
    min_ratio: float = 1.8  # never flag a rate closer than this factor to the typical one ...
    max_ratio: float = 4.0  # ... always flag one further than this, however scattered the items are
    ceiling: float = 40.0  # characters per second no one speaks, in any script
    floor: float = 1.0  # characters per second of speech below which nobody reads a transcript
    pause_seconds: float = 1.0  # silence a clip may hold at its ends before it counts as slow
    slack_chars: int = 2  # a short clip's count is coarse: this many characters either way are fine


def spoken_chars(text: str) -> int:
    """Letters and digits: what takes time to say, whatever the script (spaces and punctuation do not)."""
    return sum(c.isalnum() for c in text)


@dataclass(frozen=True)
class TypicalRate:
    language: str
    script: str
    rate: float | None  # median characters per second; None when too few items to measure
    ratio: float  # how far from `rate` (as a factor) an item may be


def _typical(language: str, script: str, rates: list[float], options: RateOptions) -> TypicalRate:
    if len(rates) < options.min_items:
        return TypicalRate(language, script, None, options.max_ratio)
    logs = [math.log(r) for r in rates]
    centre = statistics.median(logs)
    sigma = 1.4826 * statistics.median(abs(x - centre) for x in logs)
    ratio = min(max(math.exp(options.spread * sigma), options.min_ratio), options.max_ratio)
    return TypicalRate(language, script, math.exp(centre), ratio)


def _verdict(chars: int, seconds: float, typical: TypicalRate, options: RateOptions) -> str | None:
    """'too fast' or 'too slow' when `chars` cannot have been said in `seconds`, else None."""
    fastest = options.ceiling if typical.rate is None else min(options.ceiling, typical.rate * typical.ratio)
    if chars > fastest * seconds + options.slack_chars:
        return "too fast"
    slowest = options.floor if typical.rate is None else max(options.floor, typical.rate / typical.ratio)
    speech = max(seconds - options.pause_seconds, 0.0)
    if chars + options.slack_chars < slowest * speech:
        return "too slow"
    return None


def implausible_rates(items: Iterable[Utterance], options: RateOptions = RateOptions()) -> dict[str, str]:
    """item id -> why its transcript does not fit its audio, for every item whose rate is implausible.

    Items without a duration or without spoken characters are not judged (other checks report them).
    """
    groups: dict[tuple[str, str], list[tuple[Utterance, int]]] = defaultdict(list)
    for item in items:
        chars = spoken_chars(item.text)
        if item.duration > 0 and chars > 0:
            groups[(item.language, dominant_script(item.text) or "")].append((item, chars))
    found: dict[str, str] = {}
    for (language, script), members in groups.items():
        typical = _typical(language, script, [c / u.duration for u, c in members], options)
        for item, chars in members:
            verdict = _verdict(chars, item.duration, typical, options)
            if verdict is None:
                continue
            where = f"{language!r}" + (f" ({script})" if script else "")
            usual = (
                f"{where} is typically {typical.rate:.1f}/s here"
                if typical.rate is not None
                else f"beyond {options.floor:g}-{options.ceiling:g}/s for any language ({where}: too few items to measure)"
            )
            found[item.id] = (
                f"{verdict}: {chars} characters in {item.duration:.2f} s = {chars / item.duration:.1f}/s, "
                f"{usual}; is the transcript this audio's?"
            )
    return found
