"""The bad-input suite: every class of bad input a user (or a damaged disk) hands the CLI.

Each case runs the real `dama` entry point in-process on the tiny random model and real files, and
must either be refused with exit code 2 and one line that names the item and what to do, or be
accepted where that is right (stereo 44.1 kHz, 8 kHz telephone audio, a 40 s clip). No case may show
a traceback (an exception escaping `main` fails the test with one) or leave a result file behind.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dama_asr.cli import main
from dama_asr.testing import save_tiny_whisper, tiny_manifest, write_tone


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path, Path], list[str]]  # (tmp_path, tiny model folder) -> argv
    rc: int  # 2: refused; 0: accepted
    says: tuple[str, ...] = ()  # in what the command prints


def _manifest(tmp: Path, items: list[dict], raw_lines: tuple[str, ...] = ()) -> Path:
    path = tmp / "bad.jsonl"
    lines = [json.dumps(item, ensure_ascii=False) for item in items] + list(raw_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _item(tmp: Path, name: str = "ok", audio: Path | None = None, **fields) -> dict:
    audio = audio or write_tone(tmp / f"{name}.wav", seconds=1.0)
    return {"id": name, "audio": str(audio), "text": "bore da", "language": "cy", **fields}


def _eval(manifest: Path, model: Path, *extra: str) -> list[str]:
    return ["eval", "--manifest", str(manifest), "--model", str(model), "--out", str(manifest.parent / "r.json"),
            "--precision", "no", *extra]  # fmt: skip


def _train(manifest: Path, model: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--model", str(model), "--train", str(manifest), "--method", "lora", "--r", "4", "--epochs",
            "1", "--batch-size", "2", "--precision", "no", "--no-progress", "--out", str(out), *extra]  # fmt: skip


def _audio_case(tmp: Path, model: Path, write: Callable[[Path], None]) -> list[str]:
    path = tmp / "clip.wav"
    write(path)
    return _eval(_manifest(tmp, [_item(tmp), _item(tmp, "clip", audio=path)]), model)


def _not_json(tmp, model):
    return _eval(_manifest(tmp, [_item(tmp)], raw_lines=("{this is not json",)), model)


def _missing_audio(tmp, model):
    return _eval(_manifest(tmp, [_item(tmp), _item(tmp, "gone", audio=tmp / "gone.wav")]), model)


def _all_missing(tmp, model):
    return _eval(_manifest(tmp, [_item(tmp, "gone", audio=tmp / "gone.wav")]), model, "--max-skipped", "100%")


def _garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(5000))


def _stereo_44k(path: Path) -> None:
    write_tone(path, seconds=1.0, rate=44_100, channels=2)


def _phone_8k(path: Path) -> None:
    write_tone(path, seconds=1.0, rate=8_000)


def _forty_seconds(path: Path) -> None:
    write_tone(path, seconds=40.0)


def _nan_audio(path: Path) -> None:
    sf.write(str(path), np.full(16_000, np.nan, dtype=np.float32), 16_000, subtype="FLOAT")


def _language(code: str):
    return lambda tmp, model: _eval(_manifest(tmp, [_item(tmp), _item(tmp, "odd", language=code)]), model)


def _transcript(text: str):
    return lambda tmp, model: _eval(_manifest(tmp, [_item(tmp), _item(tmp, "odd", text=text)]), model)


def _duplicate_ids(tmp, model):
    return [
        "data",
        "check",
        str(_manifest(tmp, [_item(tmp, "dup7"), _item(tmp, "dup7")])),
        "--model",
        str(model),
    ]


def _huge_rank(tmp, model):
    return _train(tiny_manifest(tmp / "c", n=4), model, tmp / "run", "--r", "100000")


def _unknown_recipe_key(tmp, model):
    return _train(tiny_manifest(tmp / "c", n=4), model, tmp / "run", "--set", "optim.lrr=0.1")


def _unknown_method(tmp, model):
    return _train(tiny_manifest(tmp / "c", n=4), model, tmp / "run", "--method", "lorax")


def _corrupt_checkpoint(tmp, model):
    manifest = tiny_manifest(tmp / "c", n=4)
    assert main(_train(manifest, model, tmp / "run", "--stop-after-steps", "1")) == 0
    (ckpt,) = (tmp / "run" / "checkpoints").iterdir()
    weights = ckpt / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[:-7])
    return _train(manifest, model, tmp / "run", "--resume")


def _corrupt_adapter(tmp, model):
    manifest = tiny_manifest(tmp / "c", n=4)
    assert main(_train(manifest, model, tmp / "run")) == 0
    weights = tmp / "run" / "final" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    return _eval(manifest, model, "--adapter", str(tmp / "run" / "final"))


def _corrupt_cache_shard(tmp, model):
    manifest = tiny_manifest(tmp / "c", n=4)
    assert main(_eval(manifest, model, "--encoder-cache")) == 0
    (shard,) = (tmp / "home" / "cache" / "encoder").rglob("shard-*.safetensors")
    shard.write_bytes(b"\x00" * 64)
    return ["cache", "verify"]


def _missing_study(tmp, model):
    return ["bench", str(tmp / "nonexistent.yaml")]


def _study_typo(tmp, model):
    config = tmp / "study.yaml"
    config.write_text("name: s\nmodel: tiny-random\nmethods: [lora]\nhourz: [0.1]\ncorpora: {}\n")
    return ["bench", str(config)]


def _full_disk(tmp, model):
    return _eval(tiny_manifest(tmp / "c", n=2), model, "--encoder-cache")


CASES = [
    Case("manifest line not JSON", _not_json, 2, ("bad.jsonl:2", "not valid JSON")),
    Case("missing audio", _missing_audio, 2, ("gone.wav", "--max-skipped")),
    Case("every audio missing", _all_missing, 2, ("nothing", "gone.wav")),
    Case("zero-byte audio", lambda t, m: _audio_case(t, m, lambda p: p.write_bytes(b"")), 2, ("clip.wav",)),
    Case("garbage audio", lambda t, m: _audio_case(t, m, _garbage), 2, ("clip.wav",)),
    Case("NaN samples", lambda t, m: _audio_case(t, m, _nan_audio), 2, ("clip.wav",)),
    Case("stereo 44.1 kHz (accepted)", lambda t, m: _audio_case(t, m, _stereo_44k), 0, ("| cy | 2 |",)),
    Case("8 kHz telephone (accepted)", lambda t, m: _audio_case(t, m, _phone_8k), 0, ("| cy | 2 |",)),
    Case(
        "40 s clip (accepted, long-form)",
        lambda t, m: _audio_case(t, m, _forty_seconds),
        0,
        ("| cy | 2 |",),
    ),
    Case("unknown language", _language("klingon"), 2, ("odd", "klingon", "--detect-language")),
    Case("language the model lacks", _language("yue"), 2, ("odd", "yue")),
    Case("empty transcript", _transcript(""), 2, ("empty reference",)),
    Case("transcript empty after normalisation", _transcript("..."), 2, ("empty after normalisation",)),
    Case("duplicate ids", _duplicate_ids, 2, ("dup7", "duplicate")),
    Case("rank larger than the layer", _huge_rank, 2, ("100000",)),
    Case("unknown recipe key", _unknown_recipe_key, 2, ("lrr", "lr")),
    Case("unknown method", _unknown_method, 2, ("lorax",)),
    Case("corrupt checkpoint", _corrupt_checkpoint, 2, ("trainable.safetensors", "truncated")),
    Case("corrupt adapter", _corrupt_adapter, 2, ("adapter_model.safetensors",)),
    Case("corrupt cache shard", _corrupt_cache_shard, 2, ("shard-",)),
    Case("missing study config", _missing_study, 2, ("nonexistent.yaml",)),
    Case("typo in a study config", _study_typo, 2, ("hourz", "hours")),
    Case("full disk", _full_disk, 2, ("space", "dama cache prune")),
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return save_tiny_whisper(tmp_path_factory.mktemp("model") / "tiny")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_exit_2_and_a_line_naming_it(
    case: Case, tiny_model, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("DAMA_HOME", str(tmp_path / "home"))
    argv = case.build(tmp_path, tiny_model)
    capsys.readouterr()
    if case.name == "full disk":  # the disk fills up just as the cache is written
        import shutil

        from dama_asr import durable

        usage = shutil.disk_usage(tmp_path)
        monkeypatch.setattr(durable.shutil, "disk_usage", lambda p: usage._replace(free=1024))
    try:
        rc = main(argv)
    except SystemExit as exit:  # argparse's own usage errors
        rc = exit.code
    out, err = capsys.readouterr()
    assert rc == case.rc, f"{case.name}: rc {rc}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    assert "Traceback" not in err
    text = out + err  # `data check` and `cache verify` list the items on stdout, the verdict on stderr
    for fragment in case.says:
        assert fragment in text, f"{case.name}: {fragment!r} not in\n{text[-2000:]}"
    if case.rc == 2 and argv[0] == "eval":
        assert not (Path(argv[argv.index("--out") + 1])).exists(), "a refused eval wrote a result"
    if case.rc == 2 and argv[0] not in ("data",):
        error_lines = [line for line in err.splitlines() if line.startswith("error:") or "usage:" in line]
        assert error_lines, err[-2000:]
