"""Timed segments of a transcript, and the SRT / WebVTT subtitle files made from them.

A segment's times come from Whisper's timestamp tokens where the model predicts usable ones
(`MODEL`), else from the decoding windows that produced its text (`WINDOW`: the whole clip for a
clip within 30 s, one segment per window past it). A fine-tuned adapter often stops predicting
timestamps and a random model predicts junk (times past the end of the audio), so every builder
checks what it is given and falls back to windows.

Whatever the source, the segments' texts, joined and stripped, are the transcript's text: a
segment's text is its tokens decoded as Whisper does (leading space kept, as in openai-whisper's
and faster-whisper's segments); the subtitle writers strip each cue.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MODEL = "model"  # start and end are the model's timestamp tokens
WINDOW = "window"  # start and end are the edges of the audio window a segment was decoded from
TIMESTAMP_SOURCES = (MODEL, WINDOW)
TIME_PRECISION = 0.02  # seconds per Whisper timestamp token (<|0.00|>, <|0.02|>, ...)
# A predicted time may run a little past the audio's end (Whisper reads a padded 30 s window);
# further than this is junk, and the clip falls back to windows.
END_TOLERANCE = 1.0

Decode = Callable[[list[int]], str]  # token ids -> text, special tokens skipped


@dataclass(frozen=True)
class Segment:
    start: float  # seconds from the start of the audio
    end: float
    text: str  # as decoded: usually with a leading space

    def to_dict(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "text": self.text}


def joined_text(segments: Sequence[Segment]) -> str:
    return "".join(s.text for s in segments).strip()


def whole_clip(text: str, seconds: float) -> tuple[tuple[Segment, ...], str]:
    """One segment spanning the clip: the fallback that always agrees with the text."""
    return (Segment(0.0, seconds, text),) if text else (), WINDOW


def _checked(
    segments: list[Segment], source: str, text: str, seconds: float
) -> tuple[tuple[Segment, ...], str]:
    """`segments` if they join to `text` (a multi-byte character split at a boundary would not),
    else the whole clip as one segment."""
    kept = tuple(s for s in segments if s.text.strip())
    if joined_text(kept) != text:
        return whole_clip(text, seconds)
    return kept, source


def _plausible(times: Sequence[tuple[float, float]], seconds: float) -> bool:
    """Times that could be speech in this audio: ordered, non-negative, not past its end."""
    previous_end = 0.0
    for start, end in times:
        if not (previous_end - 1e-6 <= start <= end <= seconds + END_TOLERANCE):
            return False
        previous_end = end
    return bool(times)


def row_segments(
    generated: Sequence[int],
    timestamp_begin: int,
    end_of_text: int,
    decode: Decode,
    text: str,
    seconds: float,
) -> tuple[tuple[Segment, ...], str]:
    """Segments of one clip within 30 s decoded with timestamp tokens (`generated`: the tokens after
    the prompt). Whisper writes `<|t0|> text <|t1|><|t1|> text <|t2|>`: a timestamp opens a segment
    and the next one after some text closes it. Usable when every segment opens with a timestamp,
    every one but the last closes with one, at least one closes, and the times fit the clip."""
    pieces: list[tuple[float | None, float | None, list[int]]] = []
    start: float | None = None
    tokens: list[int] = []
    for token in generated:
        if token == end_of_text:
            break
        if token < timestamp_begin:
            if token < end_of_text:
                tokens.append(token)
            continue
        time = (token - timestamp_begin) * TIME_PRECISION
        if tokens:  # text so far: this timestamp closes its segment
            pieces.append((start, time, tokens))
            start, tokens = None, []
        else:  # opens one (the second of a pair moves the start)
            start = time
    if tokens:
        pieces.append((start, None, tokens))  # unclosed: runs to the end of the clip
    closed = [p for p in pieces if p[1] is not None]
    usable = (
        bool(closed) and all(p[0] is not None for p in pieces) and all(p[1] is not None for p in pieces[:-1])
    )
    if not usable:
        return whole_clip(text, seconds)
    times = [(s, seconds if e is None else e) for s, e, _ in pieces]  # type: ignore[misc]
    if not _plausible(times, seconds):
        return whole_clip(text, seconds)
    segments = [
        Segment(s, min(e, seconds), decode(toks)) for (s, e), (_, _, toks) in zip(times, pieces, strict=True)
    ]
    return _checked(segments, MODEL, text, seconds)


def _model_timed(tokens: Sequence[int], timestamp_begin: int) -> bool:
    """A long-form segment whose start and end are both timestamp tokens: it opens with one and its
    last text token is followed by one (else transformers dated it by its window)."""
    if not tokens or tokens[0] < timestamp_begin:
        return False
    text_at = [i for i, t in enumerate(tokens) if t < timestamp_begin]
    return bool(text_at) and text_at[-1] + 1 < len(tokens)


def long_form_segments(
    hf_segments: Sequence[dict],
    window_starts: Sequence[float],
    timestamp_begin: int,
    end_of_text: int,
    decode: Decode,
    text: str,
    seconds: float,
    use_model: bool = True,
) -> tuple[tuple[Segment, ...], str]:
    """Segments of a clip decoded long-form, from transformers' `return_segments=True` output for it
    (dicts with start, end, tokens, and result: the window's decoded row) and the start of each
    decoding window (seconds). Model-timed when `use_model`, every segment is and the times fit the
    clip; else one segment per decoding window, from its start to where the next window starts."""

    def content(seg: dict) -> list[int]:
        return [t for t in seg["tokens"].tolist() if t < end_of_text]

    spoken = [seg for seg in hf_segments if content(seg)]
    times = [(float(seg["start"]), float(seg["end"])) for seg in spoken]
    if (
        use_model
        and spoken
        and all(_model_timed(seg["tokens"].tolist(), timestamp_begin) for seg in spoken)
        and _plausible(times, seconds)
    ):
        segments = [
            Segment(s, min(e, seconds), decode(content(seg)))
            for (s, e), seg in zip(times, spoken, strict=True)
        ]
        return _checked(segments, MODEL, text, seconds)
    windows: list[list[int]] = []
    last_row = None
    for seg in hf_segments:  # a window's segments share its decoded row
        if seg["result"] is not last_row:
            windows.append([])
            last_row = seg["result"]
        windows[-1] += content(seg)
    if len(windows) != len(window_starts):
        return whole_clip(text, seconds)
    ends = [*window_starts[1:], seconds]
    segments = [
        Segment(start, min(end, seconds), decode(toks))
        for start, end, toks in zip(window_starts, ends, windows, strict=True)
    ]
    return _checked(segments, WINDOW, text, seconds)


def fixed_window_segments(
    texts: Sequence[str], window_seconds: float, seconds: float
) -> tuple[tuple[Segment, ...], str]:
    """Back-to-back windows of `window_seconds`, each with its own (stripped) text; the transcript's
    text is the non-empty ones joined by spaces."""
    text = " ".join(t for t in texts if t)
    segments = [
        Segment(i * window_seconds, min((i + 1) * window_seconds, seconds), f" {t}" if t else "")
        for i, t in enumerate(texts)
    ]
    return _checked(segments, WINDOW, text, seconds)


def timestamp(seconds: float, decimal: str = ",") -> str:
    """HH:MM:SS,mmm (SRT; decimal='.' for WebVTT), rounded to the millisecond."""
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


def _cues(segments: Sequence[Segment]) -> list[tuple[Segment, str]]:
    # A cue's text may not hold a blank line (it would end the cue) nor, in WebVTT, "-->".
    out = []
    for seg in segments:
        text = "\n".join(line for line in seg.text.strip().splitlines() if line.strip())
        if text:
            out.append((seg, text.replace("-->", "->")))
    return out


def to_srt(segments: Sequence[Segment]) -> str:
    """SubRip: numbered cues `1`, `00:00:00,000 --> 00:00:02,500`, the text, a blank line."""
    blocks = [
        f"{i}\n{timestamp(seg.start)} --> {timestamp(seg.end)}\n{text}\n"
        for i, (seg, text) in enumerate(_cues(segments), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(segments: Sequence[Segment]) -> str:
    """WebVTT: a `WEBVTT` header, then cues `00:00:00.000 --> 00:00:02.500` and their text."""
    blocks = [
        f"{timestamp(seg.start, '.')} --> {timestamp(seg.end, '.')}\n{text}\n"
        for seg, text in _cues(segments)
    ]
    return "\n".join(["WEBVTT\n", *blocks])


# `dama transcribe --format`: what each writes, and the suffix of its file in --out-dir.
FORMATS = ("text", "json", "srt", "vtt")
SUFFIXES = {"text": ".txt", "json": ".json", "srt": ".srt", "vtt": ".vtt"}


def record(audio: str, transcript) -> dict:
    """A transcript (`inference.decoding.Transcript`) as `dama transcribe --format json` writes it."""
    return {
        "audio": audio,
        "language": transcript.language,
        "text": transcript.text,
        "segments": [s.to_dict() for s in transcript.segments],
        "timestamps": transcript.timestamps,
        "suspicious": transcript.suspicious,
        "suspicious_reasons": list(transcript.suspicious_reasons),
    }


def render(fmt: str, audio: str, transcript, standalone: bool = False) -> str:
    """One transcript in `fmt` (FORMATS). text: `AUDIO\t[lang]\tTEXT` and its flags on one line;
    json: one object on one line; srt and vtt: whole subtitle files. `standalone`: as a file of its
    own (`--out-dir`): text is the text alone, json is indented."""
    if fmt == "text":
        if standalone:
            return transcript.text + "\n"
        flag = f"  [suspicious: {', '.join(transcript.suspicious_reasons)}]" if transcript.suspicious else ""
        return f"{audio}\t[{transcript.language}]\t{transcript.text}{flag}\n"
    if fmt == "json":
        indent = 2 if standalone else None
        return (
            json.dumps(record(audio, transcript), ensure_ascii=False, allow_nan=False, indent=indent) + "\n"
        )
    if fmt == "srt":
        return to_srt(transcript.segments)
    if fmt == "vtt":
        return to_vtt(transcript.segments)
    raise ValueError(f"format: one of {', '.join(FORMATS)}, got {fmt!r}")
