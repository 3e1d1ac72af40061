"""What a run reports: the summary `train()` returns and writes to summary.json, and the card of the
adapters it saves (adapters.card.model_card)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dama_asr.allocator import active_allocator
from dama_asr.train.config import TrainConfig
from dama_asr.train.metrics_log import peak_memory_bytes
from dama_asr.train.setup import RunData

if TYPE_CHECKING:
    from dama_asr.train.loop import Trainer


def adapter_card(config: TrainConfig, data: RunData, state: dict) -> dict:
    """What the saved adapter's README.md says about this run (adapters.card.model_card)."""
    originals = data.originals  # the data, not its copies or the replay
    languages = sorted({e.language for e in originals})
    seconds = sum(e.item.duration or 0.0 for e in originals)
    # The kept epoch's plain dev WER (state["best_wer"] is the capped one under eval.select_by capped_wer).
    kept = next((h for h in state["history"] if h["epoch"] == state["best_epoch"]), {})
    card = {"language": ", ".join(languages), "dataset": str(config.train),
            "train_hours": round(seconds / 3600, 3) if seconds else None,
            "dev_wer": kept.get("dev_wer", state["best_wer"]), "epochs": len(state["history"])}  # fmt: skip
    if data.replayed:
        replayed = data.examples[-data.replayed :]
        card["replay"] = (f"{len(replayed)} utterances ({', '.join(sorted({e.language for e in replayed}))}) "
                          f"from {config.replay.train}")  # fmt: skip
    return card


def run_summary(trainer: Trainer, seconds: float, stopped: bool, early: bool) -> dict:
    """The run's summary.json: what ran (device, precision, data, cache), each epoch, the best one."""
    state = trainer.state
    return {
        "model": trainer.config.model,
        "method": trainer.config.adapter.method,
        "run_dir": str(trainer.run_dir),
        "status": _status(stopped, bool(state.get("pruned")), early),
        "pruned": state.get("pruned"),
        "processes": trainer.world,
        "device": str(trainer.accelerator.device),
        "precision": trainer.precision,
        "precision_requested": trainer.config.precision,
        "allocator": active_allocator(),
        "trainable_parameters": trainer.trainable,
        "train_utterances": len(trainer.data.examples),
        "perturbed_copies": trainer.data.perturbed,
        "replay_utterances": trainer.data.replayed,
        "skipped_train_items": dict(trainer.data.skipped.counts),
        "dev_utterances": len(trainer.data.dev),
        "global_batch": trainer.config.optim.batch_size * trainer.config.optim.grad_accum * trainer.world,
        "steps": state["global_step"],
        "epochs": state["history"],
        "best_epoch": state["best_epoch"],
        "best_dev_wer": state["best_wer"],  # by eval.select_by: the capped WER where it chose
        "dev_select_by": trainer.config.eval.select_by,
        "dev_wer_normaliser": trainer.config.eval.normaliser,
        "encoder_cache": trainer._output_cache is not None,
        "encoder_cached_layers": trainer.bottom_layers if trainer.cache is not None else 0,
        "encoder_cache_build_seconds": state["cache_seconds"],
        "encoder_cache_encoded": state.get("cache_encoded", 0),
        "cross_kv_cached_utterances": len(trainer.cross_kv) if trainer.cross_kv else 0,
        "cross_kv_gib": trainer.cross_kv.used / 2**30 if trainer.cross_kv else 0.0,
        "seconds_per_epoch": state["epoch_seconds"],
        "samples_per_second": [h["samples_per_second"] for h in state["history"]],
        "wall_seconds": seconds,
        **peak_memory_bytes(trainer.accelerator.device),
        "resumed_from": str(trainer.resumed_from) if trainer.resumed_from else None,
    }


def _status(stopped: bool, pruned: bool, early: bool) -> str:
    if stopped:
        return "stopped (stop_after_steps)"
    return "pruned" if pruned else ("early stopped" if early else "finished")
