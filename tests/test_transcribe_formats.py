"""`dama transcribe --format text|json|srt|vtt`: timed segments and the subtitle files made from them."""

from __future__ import annotations

import json

import pytest
import torch

from dama_asr.cli import main
from dama_asr.inference.decoding import DecodingOptions, transcribe
from dama_asr.inference.segments import (
    MODEL,
    WINDOW,
    Segment,
    joined_text,
    long_form_segments,
    row_segments,
    timestamp,
    to_srt,
    to_vtt,
)
from dama_asr.testing import real_tokenizer, tone, write_tone

SEGMENTS = [
    Segment(0.0, 2.5, " Bore da."),
    Segment(2.5, 2.5, "  "),  # nothing said: no cue
    Segment(2.5, 3725.4567, " Sut mae?\n\nIawn --> diolch."),
]


def test_srt_of_known_segments():
    assert to_srt(SEGMENTS) == (
        "1\n00:00:00,000 --> 00:00:02,500\nBore da.\n\n"
        "2\n00:00:02,500 --> 01:02:05,457\nSut mae?\nIawn -> diolch.\n"
    )


def test_vtt_of_known_segments():
    assert to_vtt(SEGMENTS) == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:02.500\nBore da.\n\n"
        "00:00:02.500 --> 01:02:05.457\nSut mae?\nIawn -> diolch.\n"
    )
    assert to_vtt([]) == "WEBVTT\n" and to_srt([]) == ""


def test_timestamps_round_to_the_millisecond():
    assert timestamp(0.0) == "00:00:00,000" and timestamp(59.9996) == "00:01:00,000"
    assert timestamp(36000.001, ".") == "10:00:00.001"


@pytest.fixture(scope="module")
def tok():
    tokenizer = real_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    words = {w: tokenizer.encode(w, add_special_tokens=False) for w in (" Bore da.", " Sut mae?")}
    return {
        "prompt": [ids("<|startoftranscript|>"), ids("<|cy|>"), ids("<|transcribe|>")],
        "eot": ids("<|endoftext|>"),
        "begin": ids("<|0.00|>"),
        "at": lambda seconds: ids("<|0.00|>") + round(seconds / 0.02),
        "words": words,
        "decode": lambda t: tokenizer.decode(t, skip_special_tokens=True),
    }


def _row(tok, *parts):
    """A decoded row: the prompt, then floats as timestamp tokens and strings as their words."""
    body = [t for p in parts for t in ([tok["at"](p)] if isinstance(p, float) else tok["words"][p])]
    return [*tok["prompt"], *body, tok["eot"], tok["eot"]]


def _segments(tok, row, seconds=4.0):
    text = tok["decode"]([t for t in row if t < tok["eot"]]).strip()
    return row_segments(row, tok["begin"], tok["eot"], tok["decode"], text, seconds), text


def test_timestamp_tokens_give_the_model_segments(tok):
    (segments, source), text = _segments(tok, _row(tok, 0.0, " Bore da.", 1.5, 1.5, " Sut mae?", 3.2))
    assert source == MODEL and text == "Bore da. Sut mae?"
    assert segments == (Segment(0.0, 1.5, " Bore da."), Segment(1.5, 3.2, " Sut mae?"))
    # A last segment the model leaves open runs to the end of the clip.
    (segments, source), _ = _segments(tok, _row(tok, 0.0, " Bore da.", 1.5, 1.5, " Sut mae?"))
    assert source == MODEL and segments[-1] == Segment(1.5, 4.0, " Sut mae?")


@pytest.mark.parametrize(
    "parts",
    [
        (0.0, " Bore da.", " Sut mae?"),  # one opening timestamp, never closed (a fine-tuned adapter)
        (0.0, " Bore da.", 17.14, 17.14, " Sut mae?", 29.5),  # past the end of a 4 s clip (a random model)
        (2.0, " Bore da.", 1.0, 1.0, " Sut mae?", 3.0),  # going backwards
    ],
)
def test_unusable_timestamps_fall_back_to_the_whole_clip(tok, parts):
    (segments, source), text = _segments(tok, _row(tok, *parts))
    assert source == WINDOW and segments == (Segment(0.0, 4.0, text),)


def _hf_segment(tok, start, end, tokens, row):
    return {"start": torch.tensor(start, dtype=torch.float64), "end": torch.tensor(end, dtype=torch.float64),
            "tokens": torch.tensor(tokens), "result": row}  # fmt: skip


def test_long_form_segments_from_transformers_output(tok):
    w = tok["words"]
    first, second = torch.zeros(1), torch.zeros(1)  # a window's segments share its decoded row
    hf = [
        _hf_segment(tok, 0.0, 20.0, [tok["at"](0.0), *w[" Bore da."], tok["at"](20.0)], first),
        _hf_segment(tok, 28.0, 40.0, [tok["at"](0.0), *w[" Sut mae?"], tok["at"](12.0)], second),
    ]
    text = "Bore da. Sut mae?"
    args = (tok["begin"], tok["eot"], tok["decode"], text, 45.0)
    segments, source = long_form_segments(hf, [0.0, 28.0], *args)
    assert source == MODEL and [(s.start, s.end) for s in segments] == [(0.0, 20.0), (28.0, 40.0)]
    # A window dated by transformers (no closing timestamp): every segment is its window.
    hf[1]["tokens"] = torch.tensor([tok["at"](0.0), *w[" Sut mae?"]])
    segments, source = long_form_segments(hf, [0.0, 28.0], *args)
    assert source == WINDOW and segments == (
        Segment(0.0, 28.0, " Bore da."),
        Segment(28.0, 45.0, " Sut mae?"),
    )
    # Segments whose texts do not join to the transcript's: the whole clip, one segment.
    assert long_form_segments(hf[:1] * 2, [0.0, 28.0], *args) == ((Segment(0.0, 45.0, text),), WINDOW)


@pytest.mark.parametrize("timestamps", [MODEL, WINDOW])
def test_segments_join_to_the_text_short_and_long_form(tiny_backbone, timestamps):
    audios = [tone(1.5, 300), tone(35.0, 600)]
    options = DecodingOptions(language="cy", timestamps=timestamps)
    out = transcribe(tiny_backbone, audios, options)
    assert [t.long_form for t in out] == [False, True]
    for t in out:
        assert t.text and joined_text(t.segments) == t.text
        assert t.timestamps in (MODEL, WINDOW) and (timestamps == MODEL or t.timestamps == WINDOW)
        assert all(0 <= s.start <= s.end <= t.seconds for s in t.segments)
    assert out[1].segments[-1].end == pytest.approx(35.0)
    if timestamps == WINDOW:  # decoded exactly as without segments (as `dama eval` decodes)
        plain = transcribe(tiny_backbone, audios, DecodingOptions(language="cy"))
        assert [t.tokens for t in out] == [t.tokens for t in plain]
        assert all(t.segments == () and t.timestamps is None for t in plain)


def test_stalled_long_form_gives_one_segment_per_30_s_window(tiny_backbone):
    from dama_asr.inference.decoding import _decode_long

    out = _decode_long(tiny_backbone, tone(40.0, 700), "cy", DecodingOptions(timestamps=MODEL), max_windows=1)
    assert out.stalled and out.timestamps == WINDOW
    assert [(s.start, s.end) for s in out.segments] == [(0.0, 30.0), (30.0, 40.0)]
    assert joined_text(out.segments) == out.text


def test_timestamps_option_is_validated():
    with pytest.raises(ValueError, match="--timestamps must be one of model, window"):
        DecodingOptions(timestamps="words")


def _cli(capsys, *args):
    code = main(["transcribe", *args, "--model", "tiny-random", "--language", "cy", "--precision", "no"])
    out, err = capsys.readouterr()
    return code, out, err


def test_every_format_carries_the_same_text(tmp_path, capsys):
    short, long = (
        write_tone(tmp_path / "short.wav", seconds=1.5),
        write_tone(tmp_path / "long.wav", seconds=35),
    )
    code, out, _ = _cli(capsys, str(short), str(long))
    assert code == 0
    texts = [line.split("\t")[2].split("  [suspicious")[0] for line in out.strip().splitlines()]
    code, out, _ = _cli(capsys, str(short), str(long), "--format", "json")
    records = [json.loads(line) for line in out.strip().splitlines()]
    assert code == 0 and [r["text"] for r in records] == texts
    for r in records:
        assert set(r) == {
            "audio",
            "language",
            "text",
            "segments",
            "timestamps",
            "suspicious",
            "suspicious_reasons",
        }
        assert r["timestamps"] in (MODEL, WINDOW) and r["segments"]
        assert all(set(s) == {"start", "end", "text"} for s in r["segments"])
        assert "".join(s["text"] for s in r["segments"]).strip() == r["text"]
    code, out, _ = _cli(capsys, str(long), "--format", "srt")  # one file: to stdout
    cues = [block.split("\n", 2)[2] for block in out.strip().split("\n\n")]
    assert code == 0 and cues == [s["text"].strip() for s in records[1]["segments"]]
    assert _cli(capsys, str(short), "--json")[1] == json.dumps(records[0], ensure_ascii=False) + "\n"


def test_out_dir_writes_one_file_per_audio_named_after_it(tmp_path, capsys):
    audio = [write_tone(tmp_path / "a" / "talk.wav"), write_tone(tmp_path / "b.flac", seconds=0.5)]
    code, out, _ = _cli(capsys, *map(str, audio), "--format", "vtt", "--out-dir", str(tmp_path / "subs"))
    assert code == 0 and out.split() == [
        str(tmp_path / "subs" / "talk.vtt"),
        str(tmp_path / "subs" / "b.vtt"),
    ]
    assert (tmp_path / "subs" / "talk.vtt").read_text().startswith("WEBVTT\n\n00:00:00.000 --> ")
    code, _, _ = _cli(capsys, str(audio[0]), "--format", "json", "--out-dir", str(tmp_path / "js"))
    assert code == 0 and json.loads((tmp_path / "js" / "talk.json").read_text())["audio"] == str(audio[0])


def test_format_refusals_come_before_any_decoding(tmp_path, capsys):
    one, two = str(write_tone(tmp_path / "x" / "a.wav")), str(write_tone(tmp_path / "y" / "a.wav"))
    code, _, err = _cli(capsys, one, two, "--format", "srt")
    assert code == 2 and "give --out-dir" in err
    code, _, err = _cli(capsys, one, two, "--format", "srt", "--out-dir", str(tmp_path / "o"))
    assert code == 2 and "would both write" in err and not (tmp_path / "o").exists()
    code, _, err = _cli(capsys, one, "--json", "--format", "vtt")
    assert code == 2 and err == "error: --json is --format json; it cannot go with --format vtt\n"
