"""Saved adapters carry a checksum manifest; damaged folders are named errors, never tracebacks."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
import torch
from peft import PeftModel

from dama_asr.adapters import AdapterConfig, apply_adapter, load_adapted, save_adapter
from dama_asr.adapters.config import AdapterConfigError
from dama_asr.adapters.io import CHECKSUMS, AdapterIntegrityError, AdapterLoadError
from dama_asr.cli import main
from dama_asr.errors import DamaError
from dama_asr.integrity import IntegrityError, file_digest, verify_manifest, write_manifest
from dama_asr.testing import tiny_whisper, write_tone

LORA = AdapterConfig(method="lora", r=2)


def _logits(model) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    features = torch.randn(1, 80, 3000, generator=g)
    tokens = torch.tensor([[50258, 50297, 50359, 50363, 400, 401]])
    model.eval()
    with torch.no_grad():
        return model(input_features=features, decoder_input_ids=tokens).logits


def _saved(tmp_path: Path, cfg: AdapterConfig = LORA) -> tuple[Path, torch.Tensor]:
    model = apply_adapter(tiny_whisper()[0], cfg)
    # Move the factors off their init so a load that silently drops them would show in the logits.
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05)
    return save_adapter(model, cfg, tmp_path / "adapter", base_model="tiny-random"), _logits(model)


@pytest.mark.parametrize("method", ["lora", "pissa", "full"])
def test_saved_folders_list_every_file_and_load_back_exactly(tmp_path, method):
    cfg = AdapterConfig(method=method, r=2)
    folder, expected = _saved(tmp_path, cfg)
    files = json.loads((folder / CHECKSUMS).read_text())["files"]
    assert set(files) == {p.name for p in folder.iterdir()} - {CHECKSUMS}
    for name, record in files.items():
        data = (folder / name).read_bytes()
        assert record == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert torch.allclose(_logits(load_adapted(tiny_whisper()[0], folder)), expected, atol=1e-5)
    if method == "lora":  # the extra file does not bother plain peft
        plain = PeftModel.from_pretrained(tiny_whisper()[0], folder)
        assert torch.allclose(_logits(plain), expected, atol=1e-5)


def test_truncated_weights_are_named_with_both_sizes(tmp_path, capsys):
    folder, _ = _saved(tmp_path)
    weights = folder / "adapter_model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[: size // 2])
    with pytest.raises(AdapterIntegrityError) as caught:
        load_adapted(tiny_whisper()[0], folder)
    message = str(caught.value)
    assert f"adapter_model.safetensors is {size // 2} bytes, expected {size}" in message
    assert "re-export the adapter, retrain it" in message
    # Through the command line: one line on stderr, exit code 2, no traceback.
    audio = write_tone(tmp_path / "a.wav")
    assert main(["transcribe", str(audio), "--model", "tiny-random", "--adapter", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "expected" in err and "Traceback" not in err


def test_a_file_edited_in_place_fails_its_checksum(tmp_path):
    folder, _ = _saved(tmp_path)
    meta = folder / "dama_adapter.json"
    meta.write_text(meta.read_text().replace('"lora"', '"LoRA"'))  # same size, other content
    with pytest.raises(AdapterIntegrityError, match="dama_adapter.json does not match its sha256"):
        load_adapted(tiny_whisper()[0], folder)
    (folder / "adapter_config.json").unlink()
    with pytest.raises(AdapterIntegrityError, match="adapter_config.json is missing"):
        load_adapted(tiny_whisper()[0], folder)


def test_folders_saved_before_checksums_still_load_with_one_log_line(tmp_path, caplog):
    folder, expected = _saved(tmp_path)
    (folder / CHECKSUMS).unlink()
    with caplog.at_level(logging.INFO, logger="dama_asr.adapters.io"):
        model = load_adapted(tiny_whisper()[0], folder)
    assert torch.allclose(_logits(model), expected, atol=1e-5)
    lines = [r.getMessage() for r in caplog.records if r.name == "dama_asr.adapters.io"]
    assert len(lines) == 1 and "has no checksums.json" in lines[0]


@pytest.mark.parametrize(
    "name, damage, match",
    [
        ("dama_adapter.json", b"{not json", "dama_adapter.json: not valid JSON"),
        ("dama_adapter.json", b"[1, 2]", "dama_adapter.json: holds list, not a JSON object"),
        ("adapter_config.json", b"\xff\xfe", "adapter_config.json: not valid JSON"),
        ("adapter_model.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{", "not a readable safetensors"),
    ],
)
def test_unparseable_files_without_checksums_are_named(tmp_path, name, damage, match):
    folder, _ = _saved(tmp_path)
    (folder / CHECKSUMS).unlink()  # an old folder: nothing to compare against, so the parse must say it
    (folder / name).write_bytes(damage)
    with pytest.raises(AdapterIntegrityError, match=match):
        load_adapted(tiny_whisper()[0], folder)


def test_not_an_adapter_and_pickled_weights_are_clear_errors(tmp_path):
    with pytest.raises(AdapterLoadError, match="no such adapter folder"):
        load_adapted(tiny_whisper()[0], tmp_path / "nowhere")
    folder, _ = _saved(tmp_path)
    (folder / CHECKSUMS).unlink()
    (folder / "adapter_model.safetensors").rename(folder / "adapter_model.bin")
    with pytest.raises(AdapterLoadError, match="only adapter_model.bin, a pickle"):
        load_adapted(tiny_whisper()[0], folder)
    # An adapter for another architecture: named, with the likely cause.
    wide, _ = _saved(tmp_path / "wide", AdapterConfig(method="lora", r=2))
    with pytest.raises(AdapterLoadError, match="check --model"):
        load_adapted(tiny_whisper(d_model=32)[0], wide)


def test_adapter_options_of_the_wrong_type_are_config_errors():
    with pytest.raises(AdapterConfigError, match="wrong type"):
        AdapterConfig.from_dict({"method": "lora", "r": "eight"})
    with pytest.raises(AdapterConfigError, match="must be a mapping"):
        AdapterConfig.from_dict(["lora"])


def test_integrity_manifest_round_trip(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.bin").write_bytes(b"abc")
    (tmp_path / "sub" / "b.txt").write_text("hello")
    assert file_digest(tmp_path / "a.bin") == hashlib.sha256(b"abc").hexdigest()
    assert verify_manifest(tmp_path, "sums.json", "test") is False  # no manifest yet
    write_manifest(tmp_path, "sums.json", "test")
    assert set(json.loads((tmp_path / "sums.json").read_text())["files"]) == {"a.bin", "sub/b.txt"}
    assert verify_manifest(tmp_path, "sums.json", "test") is True
    (tmp_path / "extra.txt").write_text("added later, not listed")
    assert verify_manifest(tmp_path, "sums.json", "test") is True
    with pytest.raises(IntegrityError, match="not a other checksum manifest"):
        verify_manifest(tmp_path, "sums.json", "other")
    (tmp_path / "sub" / "b.txt").write_text("hello!")
    with pytest.raises(
        IntegrityError, match=r"sub/b.txt is 6 bytes, expected 5 \(truncated or replaced\); copy it again"
    ):
        verify_manifest(tmp_path, "sums.json", "test", fix="copy it again")
    (tmp_path / "sums.json").write_text("{")
    with pytest.raises(DamaError, match="sums.json: not valid JSON"):
        verify_manifest(tmp_path, "sums.json", "test")
