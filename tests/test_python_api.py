"""The README's Python snippet runs as written, on the tiny model and tiny data."""

from __future__ import annotations

import re
from pathlib import Path

import dama_asr
from dama_asr.data.manifest import read_manifest, write_manifest
from dama_asr.testing import tiny_manifest, write_tone

ROOT = Path(__file__).resolve().parents[1]


def _readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("### The same from Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


def test_every_exported_name_resolves() -> None:
    missing = [name for name in dama_asr.__all__ if getattr(dama_asr, name, None) is None]
    assert not missing
    assert (
        dama_asr.run_training.__doc__ and dama_asr.evaluate_items.__doc__ and dama_asr.load_backbone.__doc__
    )


def test_the_readme_snippet_runs_on_the_tiny_model(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    corpus = tmp_path / "data" / "cv-cy"
    for split, n in (("train-1h", 4), ("dev", 2), ("test", 2)):
        items = read_manifest(tiny_manifest(tmp_path / "made" / split, n=n))
        write_manifest(corpus / f"{split}.jsonl", items)
    write_tone(tmp_path / "clip.wav", seconds=1.0)
    # The tiny model's layers are 16 wide: DAMA's default ranks (32/8) do not fit, so smaller ones.
    snippet = _readme_snippet()
    code = (
        snippet.replace('"whisper-base"', '"tiny-random"')
        .replace('AdapterConfig(method="dama")', 'AdapterConfig(method="dama", r_high=4, r_low=2)')
        .replace('{"method": "dama"}', '{"method": "dama", "r_high": 4, "r_low": 2}')
    )
    assert code.count("r_high") == 2, "the README snippet changed: update the substitutions"
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "| side | layer |" in out and "test WER " in out
    assert (tmp_path / "runs" / "dama-cy" / "best" / "adapter_model.safetensors").is_file()
