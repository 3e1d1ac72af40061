"""The per-utterance view: sidecars read back, worst and sampled rows, audio embedded within a cap, and a
plain note where cells have no sidecars."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import soundfile as sf

from dama_asr.data.manifest import read_manifest
from dama_asr.paths import dama_home
from dama_asr.report import build_report, utterance_section
from dama_asr.report.utterances import (
    HOME,
    CorpusView,
    System,
    _AudioBudget,
    pick,
    read_sidecar,
    resolve_audio,
    write_sidecar,
)
from dama_asr.testing import tiny_manifest


def _cell(corpus, method, hours, seed=0):
    return {
        "cell": {"corpus": corpus, "method": method, "hours": hours, "seed": seed, "language": "cy"},
        "trainable_parameters": 10,
        "train": {"seconds_per_epoch": [1.0], "samples_per_second": 1.0, "peak_memory_gib": 1.0},
        "test": {"wer": 0.5, "cer": 0.2, "utterances": 3, "suspicious": 0},
        "zero_shot": {"wer": 1.0, "cer": 0.5},
    }


def _scored(items, wers):
    return [
        {"id": u.id, "language": u.language, "reference": u.text, "hypothesis": f"{u.id} <hyp>", "wer": w,
         "cer": w / 2, "suspicious": False}
        for u, w in zip(items, wers, strict=True)
    ]  # fmt: skip


def _study(tmp_path, n=3, corpora=("toy",)):
    """Cells of `corpora`, each with a lora cell at 0.5 h and 1 h (only the 1 h one is shown) and a baseline."""
    cells = tmp_path / "study" / "cells"
    cells.mkdir(parents=True)
    items = read_manifest(tiny_manifest(tmp_path / "audio", n=n, texts=[f"text {i}" for i in range(n)]))
    audio = {u.id: u.audio for u in items}
    for corpus in corpora:
        for hours, wers in ((0.5, [1.0] * n), (1, [i / n for i in range(n)])):
            name = f"{corpus}__lora__{hours}h__seed0"
            (cells / f"{name}.json").write_text(json.dumps(_cell(corpus, "lora", hours)))
            write_sidecar(cells / f"{name}.utterances.jsonl", _scored(items, wers), audio)
        (cells / f"baseline__{corpus}.json").write_text(json.dumps({"wer": 1.0, "cer": 0.5}))
        write_sidecar(cells / f"baseline__{corpus}.utterances.jsonl", _scored(items, [2.0] * n), audio)
    return tmp_path / "study", items


def test_the_page_shows_every_system_side_by_side_with_the_clips(tmp_path):
    study, items = _study(tmp_path)
    page = build_report(study).read_text()
    assert "<th>reference</th><th>zero-shot</th><th>lora 1 h seed 0</th></tr>" in page
    assert "lora 0.5 h" not in page, "a method's column is its cell with the most hours"
    assert "utt2 &lt;hyp&gt;<br><span class='wer'>WER 67%</span>" in page  # escaped, with its WER
    # Worst first by the methods' WER (utt2 2/3, utt1 1/3, utt0 0), not by the zero-shot column's.
    assert re.findall(r"<tr><td>(utt\d) \(cy\)", page) == ["utt2", "utt1", "utt0"]
    clips = re.findall(r"src='data:audio/flac;base64,([^']+)'", page)
    assert len(clips) == 3
    samples, rate = sf.read(io.BytesIO(base64.b64decode(clips[0])), dtype="int16")
    assert rate == 16_000 and samples.ndim == 1 and len(samples) == round(items[2].duration * 16_000)


def test_worst_then_a_seeded_sample_of_the_rest(tmp_path):
    ids = [f"u{i:02d}" for i in range(30)]
    method = System("m", {u: {"wer": i / 30} for i, u in enumerate(ids)})
    zero = System("zero-shot", {u: {"wer": 1 - i / 30} for i, u in enumerate(ids)})
    view = CorpusView("toy", zero, [method])
    worst, sample = pick(view, worst=3, sample=5, seed=0)
    assert worst == ["u29", "u28", "u27"]
    assert len(sample) == 5 and not set(sample) & set(worst) and sample == sorted(sample)
    assert pick(view, worst=3, sample=5, seed=0) == (worst, sample), "not reproducible"
    assert pick(view, worst=3, sample=5, seed=1)[1] != sample, "the seed does not choose the sample"


def test_embedded_audio_stops_at_the_cap(tmp_path):
    study, _ = _study(tmp_path, n=12, corpora=("a", "b"))  # 2 corpora x (6 worst + 4 sampled) rows
    section = utterance_section(study)
    assert section.count("data:audio/flac;base64,") == 20 and section.count("<tr><td>utt") == 20
    study3, _ = _study(tmp_path / "more", n=12, corpora=("a", "b", "c"))
    section = utterance_section(study3)
    assert section.count("data:audio/flac;base64,") == 20 and section.count("page cap reached") == 10
    clip = read_manifest(tmp_path / "audio" / "manifest.jsonl")[0].audio
    budget = _AudioBudget(clips=5, size=100)  # bytes: less than one clip
    assert "page cap reached" in budget.tag(clip) and budget.clips == 5


def test_a_clip_that_is_not_there_is_named(tmp_path):
    study, items = _study(tmp_path)
    (study / "cells" / "baseline__toy.json").unlink()  # and its sidecar stays unread
    (study / "cells" / "baseline__toy.utterances.jsonl").unlink()
    Path(items[0].audio).unlink()
    section = utterance_section(study)
    assert (
        "no audio:" in section and "file not found" in section and "toy: no zero-shot hypotheses" in section
    )
    assert "<td>–</td>" in section  # the zero-shot column stays, empty


def test_a_rebuilt_page_keeps_the_clips_it_can_no_longer_read(tmp_path):
    # A committed report rebuilt on a machine without the corpus keeps its audio (and says what it lacks).
    study, items = _study(tmp_path)
    first = build_report(study).read_text()
    before = dict(re.findall(r"<tr><td>(utt\d) \(cy\)<audio[^>]*base64,([^']+)'", first))
    assert set(before) == {"utt0", "utt1", "utt2"}
    for item in items[:2]:
        Path(item.audio).unlink()
    again = build_report(study).read_text()
    after = dict(re.findall(r"<tr><td>(utt\d) \(cy\)<audio[^>]*base64,([^']+)'", again))
    assert after == before and "no audio:" not in again
    (study / "report" / "report.html").unlink()  # no earlier page: the missing clips are named
    assert build_report(study).read_text().count("no audio:") == 2


def test_cells_without_sidecars_are_said_to_have_none(tmp_path):
    cells = tmp_path / "study" / "cells"
    cells.mkdir(parents=True)
    for name in ("toy__lora__1h__seed0", "toy__dama__1h__seed0"):
        (cells / f"{name}.json").write_text(json.dumps(_cell("toy", name.split("__")[1], 1)))
    page = build_report(tmp_path / "study").read_text()
    assert "No per-utterance hypotheses recorded: none of the 2 cell(s)" in page
    assert "data:audio" not in page

    study, _ = _study(tmp_path / "some")
    (study / "cells" / "toy__dama__1h__seed0.json").write_text(json.dumps(_cell("toy", "dama", 1)))
    assert "1 cell(s) predate them" in utterance_section(study)


def test_clips_under_dama_home_are_stored_relative_to_it(tmp_path):
    clip = dama_home() / "corpora" / "x" / "a.wav"
    path = write_sidecar(tmp_path / "c.utterances.jsonl", _scored(read_manifest(tiny_manifest(tmp_path, n=1)), [0.0]),
                         {"utt0": str(clip)})  # fmt: skip
    (row,) = read_sidecar(path)
    assert row["audio"] == f"{HOME}/corpora/x/a.wav" and resolve_audio(row["audio"]) == clip
    assert list(row) == ["id", "language", "audio", "reference", "hypothesis", "wer", "cer", "suspicious"]


def test_a_suspicious_hypothesis_names_its_rules(tmp_path):
    study, items = _study(tmp_path)
    rows = _scored(items, [0.0, 0.5, 3.0])
    rows[2] |= {"suspicious": True, "suspicious_reasons": ["loop"]}
    audio = {u.id: u.audio for u in items}
    path = write_sidecar(study / "cells" / "toy__lora__1h__seed0.utterances.jsonl", rows, audio)
    assert read_sidecar(path)[2]["suspicious_reasons"] == ["loop"]
    assert "WER 300%, suspicious: loop</span>" in utterance_section(study)
