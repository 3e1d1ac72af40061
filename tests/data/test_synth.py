"""`dama data synth` on a tiny budget with real espeak-ng: determinism, disjoint splits, resume, noise."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from dama_asr.data.manifest import read_manifest
from dama_asr.data.sentences import Sentence
from dama_asr.data.synth import build_synth_corpus, render_clip
from dama_asr.data.synth_plan import SynthConfig, assign_voices, clip_specs, partition_sentences

WELSH = [
    "Mae'r tywydd yn braf heddiw yng Nghaerdydd.", "Rydw i'n hoffi darllen llyfrau yn y llyfrgell.",
    "Mae'r plant yn chwarae yn yr ardd gefn.", "Ble mae'r orsaf drenau agosaf os gwelwch yn dda?",
    "Roedd y cyngerdd neithiwr yn ardderchog iawn.", "Mae fy chwaer yn byw yn y gogledd.",
    "Cliciwch ar eicon y cyfrif i fewngofnodi.", "Mae'r wefan hon yn defnyddio cwcis.",
    "Dyw'r wefan ddim yn gweithio ar hyn o bryd.", "Rhaid i chi gadw'r ffeil cyn cau'r rhaglen.",
    "Mae'r siop ar agor tan chwech heno.", "Aethon ni i'r traeth ddydd Sadwrn diwethaf.",
    "Mae'r athro yn esbonio'r wers yn glir.", "Hoffech chi baned o de neu goffi?",
    "Mae'r mynyddoedd yn edrych yn hardd yn yr haf.", "Dewch i weld yr arddangosfa newydd yn yr amgueddfa.",
    "Mae'r bws yn hwyr unwaith eto heddiw.", "Gwnewch yn siŵr bod y drws ar gau.",
    "Mae llawer o bobl yn siarad Cymraeg yma.", "Rydyn ni'n mynd ar wyliau i Lydaw eleni.",
]  # fmt: skip
SENTENCES = {"cy": [Sentence(t, "cy", "test-fixture", "CC0-1.0") for t in WELSH]}
# About 20 s of training audio and 8 s each of dev and test: a handful of clips.
TINY = SynthConfig(languages=("cy",), hours=20 / 3600, dev_minutes=8 / 60, test_minutes=8 / 60, seed=3)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    return out, build_synth_corpus(TINY, out, sentences=SENTENCES)


def _manifests(out):
    return {split: read_manifest(out / "cy" / f"{split}.jsonl") for split in ("train", "dev", "test")}


def test_budgets_fields_and_durations(built):
    out, corpus = built
    manifests = _manifests(out)
    for split, budget in (("train", 20.0), ("dev", 8.0), ("test", 8.0)):
        items = manifests[split]
        total = sum(u.duration for u in items)
        assert budget <= total < budget + 15  # stops at the first clip that reaches the budget
        for u in items:
            assert (u.language, u.split, u.source) == ("cy", split, "synth-espeak-ng")
            assert u.speaker.startswith("cy+") and u.text in WELSH
            assert 130 <= u.extra["speed_wpm"] <= 200 and 35 <= u.extra["pitch"] <= 65
            assert u.extra["text_source"] == "test-fixture"
            info = sf.info(u.audio)
            assert (info.samplerate, info.channels) == (16000, 1)
            assert abs(info.frames / 16000 - u.duration) < 1e-3
    assert [u.id for u in corpus["cy"]["train"]] == [u.id for u in manifests["train"]]


def test_splits_disjoint_in_sentences_and_voices(built):
    manifests = _manifests(built[0])
    texts = {s: {u.text for u in items} for s, items in manifests.items()}
    voices = {s: {u.speaker for u in items} for s, items in manifests.items()}
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not texts[a] & texts[b]
        assert not voices[a] & voices[b]


def test_voice_assignment_is_disjoint_and_covers_every_group():
    voices = assign_voices(seed=0)
    assert len(voices["test"]) == len(voices["dev"]) == 4
    assert not set(voices["train"]) & (set(voices["dev"]) | set(voices["test"]))
    assert not set(voices["dev"]) & set(voices["test"])
    assert assign_voices(seed=0) == voices and assign_voices(seed=1) != voices


def test_same_seed_same_corpus_other_seed_differs(built, tmp_path):
    out, _ = built
    again = build_synth_corpus(TINY, tmp_path / "again", sentences=SENTENCES)
    first = _manifests(out)
    for split, items in again["cy"].items():
        assert [(u.id, u.text, u.speaker, u.duration) for u in items] == [
            (u.id, u.text, u.speaker, u.duration) for u in first[split]
        ]
        assert all(
            sf.read(a.audio)[0].tobytes() == sf.read(b.audio)[0].tobytes()
            for a, b in zip(items, first[split], strict=True)
        )
    other = SynthConfig(**{**TINY.__dict__, "seed": 4})
    pools = partition_sentences(SENTENCES["cy"], other, "cy")
    assert pools != partition_sentences(SENTENCES["cy"], TINY, "cy")


def test_rerun_resumes_without_rendering_again(built):
    out, _ = built
    wavs = sorted((out / "cy" / "wav").rglob("*.wav"))
    stamps = {p: p.stat().st_mtime_ns for p in wavs}
    build_synth_corpus(TINY, out, sentences=SENTENCES)
    assert sorted((out / "cy" / "wav").rglob("*.wav")) == wavs
    assert {p: p.stat().st_mtime_ns for p in wavs} == stamps
    assert json.loads((out / "cy" / "synth.json").read_text())["seed"] == 3


def test_changed_settings_rebuild_the_clips(tmp_path):
    build_synth_corpus(TINY, tmp_path, sentences=SENTENCES)
    faster = SynthConfig(**{**TINY.__dict__, "speed": (300, 300)})
    corpus = build_synth_corpus(faster, tmp_path, sentences=SENTENCES)
    assert {u.extra["speed_wpm"] for items in corpus["cy"].values() for u in items} == {300}


def test_noise_is_added_at_the_requested_snr(tmp_path):
    spec = next(clip_specs("train", SENTENCES["cy"], ["m3"], TINY, "cy"))
    render_clip(spec, tmp_path / "clean.wav")
    render_clip(spec, tmp_path / "noisy.wav", snr_db=10.0)
    clean, _ = sf.read(tmp_path / "clean.wav")
    noisy, _ = sf.read(tmp_path / "noisy.wav")
    gain = float(noisy @ clean / (clean @ clean))  # a peak normalisation may scale speech and noise alike
    noise = noisy - gain * clean
    snr = 10 * np.log10(np.sum((gain * clean) ** 2) / np.sum(noise**2))
    assert abs(snr - 10.0) < 0.5


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="speed"):
        SynthConfig(languages=("cy",), speed=(50, 100))
    with pytest.raises(ValueError, match="languages"):
        SynthConfig(languages=())
