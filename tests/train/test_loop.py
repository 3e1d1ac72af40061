"""The training loop end to end on the tiny model: learning, resume, corrupt checkpoints, NaN, logs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dama_asr.train import CheckpointError, TrainConfigError, TrainingDiverged, train
from dama_asr.train.checkpoint import list_checkpoints
from dama_asr.train.metrics_log import read_log


def _losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in read_log(run_dir / "train_log.jsonl")]


def test_a_few_steps_lower_the_loss_and_write_the_run_folder(make_config) -> None:
    config = make_config(adapter={"method": "full"}, optim={"epochs": 4, "lr": 1e-2})
    summary = train(config)
    run = config.run_dir
    losses = _losses(run)
    assert len(losses) == summary["steps"] == 16
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.3
    for name in ("config.yaml", "summary.json", "train_log.jsonl", "final/dama_adapter.json"):
        assert (run / name).is_file(), name
    assert len(list_checkpoints(run / "checkpoints")) == 2  # keep_checkpoints
    assert any((run / "tensorboard").iterdir())
    record = read_log(run / "train_log.jsonl")[0]
    assert {"step", "epoch", "loss", "lr", "grad_norm", "samples_per_s"} <= set(record)
    assert summary["trainable_parameters"] > 0 and summary["peak_rss_bytes"] > 0
    assert len(summary["seconds_per_epoch"]) == 4 and summary["status"] == "finished"


def test_lora_trains_only_the_adapter(make_config) -> None:
    config = make_config()
    summary = train(config)
    losses = _losses(config.run_dir)
    assert losses[-1] < losses[0]
    weights = load_file(str(config.run_dir / "final" / "adapter_model.safetensors"))
    assert weights and all("lora_" in k for k in weights)
    assert summary["trainable_parameters"] == sum(v.numel() for v in weights.values())


def test_resume_continues_the_same_run(make_config, tmp_path: Path) -> None:
    straight = make_config(output_dir=str(tmp_path / "straight"), optim={"grad_accum": 2, "batch_size": 1})
    train(straight)
    interrupted = make_config(output_dir=str(tmp_path / "resumed"), optim={"grad_accum": 2, "batch_size": 1},
                              stop_after_steps=3)  # fmt: skip
    first = train(interrupted)
    assert first["status"].startswith("stopped") and first["steps"] == 3
    assert not (interrupted.run_dir / "final").exists()
    resumed = make_config(output_dir=str(tmp_path / "resumed"), optim={"grad_accum": 2, "batch_size": 1})
    summary = train(resumed, resume=True)
    assert summary["resumed_from"].endswith("step-00000003")
    a, b = _losses(straight.run_dir), _losses(resumed.run_dir)
    assert len(a) == len(b) == 8
    assert b == pytest.approx(a, rel=1e-5, abs=1e-6)
    wa = load_file(str(straight.run_dir / "final" / "adapter_model.safetensors"))
    wb = load_file(str(resumed.run_dir / "final" / "adapter_model.safetensors"))
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-6)


def test_resume_refuses_a_different_configuration(make_config) -> None:
    train(make_config(stop_after_steps=2))
    with pytest.raises(TrainConfigError, match="optim.lr"):
        train(make_config(optim={"lr": 0.5}), resume=True)
    with pytest.raises(TrainConfigError, match="already holds a run"):
        train(make_config())


def test_corrupt_checkpoint_is_detected_and_the_previous_one_used(make_config, caplog) -> None:
    config = make_config(checkpoint_every=1, stop_after_steps=3)
    train(config)
    older, newest = list_checkpoints(config.run_dir / "checkpoints")
    weights = newest / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])  # truncated
    resumed = make_config(checkpoint_every=1)
    with caplog.at_level("WARNING"):
        summary = train(resumed, resume=True)
    assert "truncated" in caplog.text and summary["resumed_from"] == str(older)

    other = make_config(
        output_dir=str(config.run_dir.parent / "other"), checkpoint_every=1, stop_after_steps=2
    )
    train(other)
    for folder in list_checkpoints(other.run_dir / "checkpoints"):
        (folder / "checkpoint.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        train(make_config(output_dir=str(other.run_dir), checkpoint_every=1), resume=True)


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_nan_loss_stops_the_run_and_keeps_the_last_checkpoint(make_config, precision) -> None:
    config = make_config(optim={"lr": 1e30}, checkpoint_every=1, precision=precision)
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step \d+.*step-0000000\d"):
        train(config)
    kept = list_checkpoints(config.run_dir / "checkpoints")
    assert kept and not (config.run_dir / "final").exists()
    state = json.loads((kept[-1] / "state.json").read_text())
    assert state["global_step"] == int(kept[-1].name.split("-")[1])


def test_fp16_on_cpu_falls_back_to_float32_with_a_warning(make_config, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="dama_asr.precision"):
        summary = train(make_config(precision="fp16", stop_after_steps=1))
    assert summary["steps"] == 1 and summary["precision"] == "no"
    assert any("float32" in r.getMessage() for r in caplog.records)


def test_dev_wer_each_epoch_keeps_best_and_stops_early(make_config, tiny_train: Path) -> None:
    # lr 1e-7 leaves the greedy output unchanged: epoch 2 is no better than epoch 1 -> stop (patience 1).
    config = make_config(
        dev=str(tiny_train),
        optim={"epochs": 3, "lr": 1e-7},
        eval={"patience": 1, "max_utterances": 1, "batch_size": 1},
    )
    summary = train(config)
    wers = [h["dev_wer"] for h in summary["epochs"]]
    assert len(wers) == 2 and wers[0] == wers[1] and summary["status"] == "early stopped"
    assert summary["best_dev_wer"] == wers[0] and summary["best_epoch"] == 1
    assert (config.run_dir / "best" / "adapter_config.json").is_file()
    assert (config.run_dir / "eval" / "epoch-2.json").is_file()
    assert [r["epoch"] for r in read_log(config.run_dir / "train_log.jsonl", kind="eval")] == [1, 2]


def test_final_adapter_loads_with_plain_peft(make_config) -> None:
    from peft import PeftModel

    from dama_asr.adapters import load_adapted
    from dama_asr.testing import tiny_whisper

    config = make_config(stop_after_steps=0, optim={"epochs": 1})
    train(config)
    base, _ = tiny_whisper()
    plain = PeftModel.from_pretrained(base, config.run_dir / "final").eval()
    ours = load_adapted(tiny_whisper()[0], config.run_dir / "final").eval()
    inputs = {
        "input_features": torch.randn(1, 80, 3000),
        "decoder_input_ids": torch.tensor([[50258, 50272, 50359]]),
    }
    with torch.no_grad():
        a, b = plain(**inputs).logits, ours(**inputs).logits
        reference = tiny_whisper()[0](**inputs).logits
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, reference)  # training moved the adapter away from zero
