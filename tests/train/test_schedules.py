"""Learning-rate schedules: warmup that trains from the first step, decays that end above 0, and the
plateau schedule (constant, halved on a dev epoch without improvement, stopped after patience)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from dama_asr.train import TrainConfig, train
from dama_asr.train.config import TrainConfigError
from dama_asr.train.schedules import decay_on_plateau, make_schedule


def _lrs(kind: str, warmup: int, total: int, steps: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_schedule(opt, kind, warmup, total)
    out = []
    for _ in range(steps):
        out.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return out


def test_warmup_trains_from_the_first_step_and_linear_decay_ends_above_zero() -> None:
    lrs = _lrs("linear", warmup=3, total=10, steps=10)
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])  # (s + 1) / (w + 1), never 0
    assert lrs[3:] == pytest.approx([1 - k / 7 for k in range(7)])
    assert lrs[-1] > 0
    cosine = _lrs("cosine", warmup=0, total=4, steps=4)
    assert cosine == pytest.approx([0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)])
    assert _lrs("constant", warmup=1, total=5, steps=4) == pytest.approx([0.5, 1.0, 1.0, 1.0])


def test_plateau_decay_takes_effect_at_the_next_step_and_survives_a_state_round_trip() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched = make_schedule(opt, "plateau", warmup=1, total=100)
    for _ in range(3):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(2.0)
    assert decay_on_plateau(sched, 0.5) == pytest.approx(1.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0) and sched.get_last_lr() == pytest.approx([1.0])
    state = sched.state_dict()
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    sched2 = make_schedule(opt2, "plateau", warmup=1, total=100)
    sched2.load_state_dict(state)
    opt2.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(1.0)  # the decay was restored, not reset to 2.0
    # Another kind of schedule is left alone.
    linear = make_schedule(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), "linear", 0, 10)
    assert decay_on_plateau(linear, 0.5) is None and linear.get_last_lr() == pytest.approx([1.0])


def test_the_default_schedule_is_plateau_with_a_dev_set_and_linear_without(
    tiny_train: Path, tmp_path: Path
) -> None:
    base = {"model": "tiny-random", "train": str(tiny_train), "output_dir": str(tmp_path)}
    with_dev = TrainConfig.from_dict({**base, "dev": str(tiny_train)}).optim
    assert (with_dev.schedule, with_dev.epochs) == ("plateau", 30)  # converged: 30 is only a cap
    without = TrainConfig.from_dict(base).optim
    assert (without.schedule, without.epochs) == ("linear", 5)
    no_patience = TrainConfig.from_dict({**base, "dev": str(tiny_train), "eval": {"patience": 0}}).optim
    assert no_patience.schedule == "linear"
    # Stored resolved: the run's config.yaml reads back to the same schedule.
    assert TrainConfig.from_dict(TrainConfig.from_dict(base).to_dict()).optim == without
    with pytest.raises(TrainConfigError, match="needs a dev set"):
        TrainConfig.from_dict({**base, "optim": {"schedule": "plateau"}})
    assert TrainConfig.from_dict({**base, "optim": {"epochs": 2}}).optim.epochs == 2


def test_a_plateau_run_halves_its_rate_after_each_epoch_without_improvement_and_stops(
    tiny_train: Path, tmp_path: Path
) -> None:
    config = TrainConfig.from_dict({
        "model": "tiny-random", "train": str(tiny_train), "dev": str(tiny_train),
        "output_dir": str(tmp_path / "run"), "adapter": {"method": "lora", "r": 2},
        "optim": {"epochs": 6, "batch_size": 4, "lr": 1e-3, "warmup_steps": 1},
        "eval": {"patience": 2, "max_utterances": 2}, "precision": "no", "progress_bar": False,
    })  # fmt: skip
    assert config.optim.schedule == "plateau"
    summary = train(config)
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if r.get("kind") == "train"]
    per_epoch = 2  # 8 clips, 4 per batch
    lrs = [steps[e * per_epoch + per_epoch - 1]["lr"] for e in range(len(summary["epochs"]))]
    assert steps[0]["lr"] == pytest.approx(5e-4)  # warmup: half the rate at the first step, not 0
    best, bad, expected = None, 0, 1e-3
    for epoch, history in enumerate(summary["epochs"]):
        assert lrs[epoch] == pytest.approx(expected), f"epoch {epoch + 1}"
        if best is None or history["dev_wer"] < best:
            best, bad = history["dev_wer"], 0
        else:
            bad, expected = bad + 1, expected * 0.5
    # It stopped because `patience` epochs in a row did not improve, or it ran to the cap.
    assert bad == 2 or len(summary["epochs"]) == 6
    assert summary["best_dev_wer"] == best
