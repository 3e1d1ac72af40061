"""Real Whisper-base training (slow): the encoder cache makes the second epoch at least 2x faster."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dama_asr.data.manifest import Utterance, write_manifest
from dama_asr.train import TrainConfig, train
from dama_asr.train.metrics_log import read_log

pytestmark = pytest.mark.slow

SENTENCES = [
    "Mae'r tywydd yn braf heddiw.",
    "Rydw i'n hoffi darllen llyfrau.",
    "Ble mae'r orsaf drenau agosaf?",
    "Diolch yn fawr am eich help.",
    "Mae fy mrawd yn byw yng Nghaerdydd.",
    "Roedd y cyngerdd neithiwr yn wych.",
    "Hoffwn i gael paned o de.",
    "Mae'r plant yn chwarae yn yr ardd.",
    "Beth yw dy enw di?",
    "Rydyn ni'n mynd i'r traeth yfory.",
    "Mae'r siop ar gau ar ddydd Sul.",
    "Dysgais i Gymraeg yn yr ysgol.",
]


@pytest.fixture(scope="module")
def welsh_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from dama_asr.data.espeak import synthesize

    folder = tmp_path_factory.mktemp("cy")
    items = [
        Utterance(
            id=f"cy{i}",
            audio=str(synthesize(text, folder / f"cy{i}.wav", voice="cy")),
            text=text,
            language="cy",
        )
        for i, text in enumerate(SENTENCES)
    ]
    return write_manifest(folder / "train.jsonl", items)


def test_dama_on_whisper_base_learns_and_the_cache_pays_off(
    welsh_manifest: Path, tmp_path: Path, embedded_dir
) -> None:
    config = TrainConfig.from_dict(
        {
            "model": "whisper-base",
            "train": str(welsh_manifest),
            "dev": str(welsh_manifest),
            "output_dir": str(tmp_path / "run"),
            "adapter": {"method": "dama"},
            "optim": {"epochs": 3, "batch_size": 4, "lr": 1e-3, "warmup_steps": 1},
            "eval": {"max_utterances": 4, "batch_size": 4},
            "progress_bar": False,
        }
    )
    summary = train(config)
    first, second = summary["seconds_per_epoch"][:2]
    assert summary["encoder_cache_encoded"] == len(SENTENCES)
    assert second * 2 <= first, summary["seconds_per_epoch"]
    losses = [r["loss"] for r in read_log(config.run_dir / "train_log.jsonl")]
    assert sum(losses[-3:]) < sum(losses[:3])
    assert all(h["dev_wer"] is not None for h in summary["epochs"])
