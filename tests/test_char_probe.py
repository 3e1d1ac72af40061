"""The character CTC probe: a linear head learns to spell frames that encode characters, and `dama probe
--task chars` scores every encoder layer of a real (tiny) Whisper on real audio files."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dama_asr.cli import main
from dama_asr.probe.chars import CharProbeOptions, _cer, _train_head, normalise_text
from dama_asr.testing import tiny_manifest


def test_a_linear_ctc_head_spells_frames_that_encode_the_characters() -> None:
    # Each character is a fixed random direction held for 3 frames, with noise: linearly readable.
    g = torch.Generator().manual_seed(0)
    alphabet = ["<blank>", *"abcde "]
    codes = torch.randn(len(alphabet), 16, generator=g)
    texts = ["abc de", "bad", "cab ed", "dead", "ace", "bee cad", "a b c", "edc ba"] * 3

    def frames(text: str) -> torch.Tensor:
        rows = [codes[alphabet.index(c)] for c in text for _ in range(3)]
        return (torch.stack(rows) + 0.1 * torch.randn(len(rows), 16, generator=g)).half()

    x = [frames(t) for t in texts]
    targets = [[alphabet.index(c) for c in t] for t in texts]
    head = _train_head(x, targets, len(alphabet), CharProbeOptions(epochs=60, lr=3e-2, batch_size=8), seed=0)
    assert _cer(head, x[:8], texts[:8], alphabet) < 0.1
    untrained = torch.nn.Linear(16, len(alphabet))
    assert _cer(untrained, x[:8], texts[:8], alphabet) > 0.5


def test_normalisation_keeps_every_script() -> None:
    assert normalise_text("  Ble  MAE'r\tOrsaf ") == "ble mae'r orsaf"
    assert (
        normalise_text("ᲗᲑᲘᲚᲘᲡᲘ თბილისი") == "თბილისი თბილისი"
    )  # Georgian Mtavruli lower-cases to Mkhedruli


def test_dama_probe_task_chars_scores_every_encoder_layer(tmp_path: Path, capsys) -> None:
    manifest = tiny_manifest(tmp_path / "data", n=10, texts=[f"bore da {i}" for i in range(10)])
    out = tmp_path / "probe"
    assert main(["probe", "--task", "chars", "--model", "tiny-random", "--manifest", str(manifest),
                 "--out", str(out), "--precision", "no"]) == 0  # fmt: skip
    result = json.loads((out / "chars_probe.json").read_text())
    assert [r["layer"] for r in result["layers"]] == list(
        range(3)
    )  # tiny-random: 2 encoder layers + front end
    assert all(r["cer"] >= 0 for r in result["layers"])
    assert result["best_layer"] == min(result["layers"], key=lambda r: r["cer"])["layer"]
    assert result["heldout_utterances"] == 2 and result["train_utterances"] <= 8
    assert (out / "chars_probe.png").stat().st_size > 0
    assert "held-out CER" in capsys.readouterr().out
