"""`train(config)`: the training loop on accelerate (one CPU, one GPU, or `accelerate launch` with many).

Loss normalisation is exact across processes and accumulation steps: every optimizer step sums
token losses over the whole global batch and divides by its number of label tokens (all-reduced),
so 2 processes x batch 2 give the same gradients as 1 process x batch 4.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object, set_seed
from tqdm.auto import tqdm

from dama_asr.adapters import base_model_of, save_adapter, trainable_parameter_count
from dama_asr.adapters.sets import base_fingerprint
from dama_asr.atomic import atomic_write_text, remove_leftovers
from dama_asr.backbone.loading import Backbone, load_backbone
from dama_asr.errors import DamaError
from dama_asr.evaluate import capped_wer, evaluate_items
from dama_asr.faults import crash_point
from dama_asr.features.cross_kv import CrossKV
from dama_asr.features.encoder_cache import EncoderCache, utterance_key
from dama_asr.features.encoder_prefix import install_prefix_entry, remove_prefix_entry
from dama_asr.features.log_mel import log_mel_items
from dama_asr.inference.decoding import DecodingOptions
from dama_asr.locks import FolderLock
from dama_asr.train.augment import augment_inputs, mask_generator
from dama_asr.train.checkpoint import (
    latest_good_checkpoint,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    rng_state,
    save_checkpoint,
)
from dama_asr.train.config import TrainConfig, TrainConfigError, config_differences, load_recipe
from dama_asr.train.data import IGNORE_INDEX, collate_tokens, shard_batch
from dama_asr.train.metrics_log import MetricsLog
from dama_asr.train.objectives import TOKEN_TERM, Objective, ObjectiveSetup, StepModel, get_objective
from dama_asr.train.run_report import adapter_card, run_summary
from dama_asr.train.schedules import decay_on_plateau
from dama_asr.train.setup import (
    RunData,
    build_cross_kv,
    build_encoder_cache,
    global_micro_batches,
    load_run_data,
    make_accelerator,
    make_optimizer,
    make_scheduler,
    prepare_model,
    steps_per_epoch,
)

log = logging.getLogger(__name__)


# Asked after each scored epoch with the history so far (dicts with "epoch", "dev_score", ...): a reason
# to stop the run now (a search's pruning rule), or None.
Pruner = Callable[[list[dict]], str | None]


class TrainingDiverged(DamaError, RuntimeError):
    """The loss became NaN or infinite; the run stopped and kept its last good checkpoint."""


class Trainer:
    """One run: holds the model, optimizer, schedule, data and progress; `run()` trains it."""

    def __init__(self, config: TrainConfig, resume: bool = False, prune: Pruner | None = None) -> None:
        self.config = config
        self.prune = prune
        self.accelerator: Accelerator = make_accelerator(config)
        self.run_dir = config.run_dir
        self.ckpt_dir = self.run_dir / "checkpoints"
        # One process per run folder: a second `dama train --out` here would prune this one's checkpoints.
        self._lock = FolderLock(self.run_dir, "training run").acquire() if self.is_main else None
        try:
            self._setup(config, resume)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        model = getattr(self, "model", None)
        if model is not None and getattr(
            self, "bottom_layers", 0
        ):  # the model may outlive the run (benchmarks, the API)
            remove_prefix_entry(base_model_of(self.accelerator.unwrap_model(model)).model.encoder)
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _setup(self, config: TrainConfig, resume: bool) -> None:
        self._check_run_dir(resume)
        if self.is_main:  # we hold the lock: any scratch folder here is a killed writer's
            for folder in (self.run_dir, self.ckpt_dir):
                for path in remove_leftovers(folder) if folder.is_dir() else []:
                    log.info("removed %s, left by an interrupted write", path)
        self.backbone = load_backbone(config.model, device="cpu", precision="no")
        # The untouched base's weights, recorded with every saved adapter (export checks them).
        self.base_fingerprint = base_fingerprint(self.backbone.model)
        # What runs is the accelerator's resolution of config.precision for its device ('auto' -> bf16 or no).
        self.precision: str = self.accelerator.mixed_precision
        self.backbone.precision = self.precision
        # Data errors (unknown language, over-long or no transcripts) come before any model work.
        self.data: RunData = load_run_data(config, self.backbone)
        set_seed(config.seed)  # adapter initialisation (LoRA's random A) follows the run's seed
        model = prepare_model(config, self.backbone, self.accelerator.device)
        self.objective: Objective = get_objective(config.objective)
        self.objective.init_model(model, config)  # before a checkpoint, which then wins on --resume
        self.world = self.accelerator.num_processes
        self.steps_per_epoch = steps_per_epoch(
            config, len(self.data.examples), self.world, self.data.languages
        )
        self.total_steps = self.steps_per_epoch * config.optim.epochs
        self.optimizer = make_optimizer(model, config.optim)
        self.scheduler = make_scheduler(self.optimizer, config.optim, self.total_steps, self.steps_per_epoch)
        global_batch = config.optim.batch_size * config.optim.grad_accum * self.world
        self.state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_wer": None, "best_epoch": None,
                      "bad_epochs": 0, "history": [], "epoch_seconds": [], "cache_seconds": 0.0,
                      # The unfinished epoch's step losses and training time, so that a resumed epoch
                      # reports the mean over all its steps, not only those after the restart.
                      "epoch_losses": [], "epoch_train_seconds": 0.0, "epoch_samples": 0,
                      "world_size": self.world, "global_batch": global_batch}  # fmt: skip
        self.resumed_from: Path | None = None
        if resume and not list_checkpoints(self.ckpt_dir):
            # Killed before its first checkpoint: there is nothing to lose, so start from the beginning.
            log.warning("%s: no checkpoint yet; --resume starts the run from the beginning", self.run_dir)
        elif resume:
            self.resumed_from, self.state = latest_good_checkpoint(self.ckpt_dir)
            self._check_world(self.state, global_batch)
            load_checkpoint(
                self.resumed_from, model, self.optimizer, self.scheduler, self.accelerator.process_index
            )
        self.trainable = trainable_parameter_count(model)
        self.model, self.optimizer = self.accelerator.prepare(model, self.optimizer)
        self.log = MetricsLog(Path(config.log_dir) if config.log_dir else self.run_dir, self.is_main)
        if resume:
            self.log.truncate_after(self.state["global_step"])  # 0 when starting over
        self.cache: EncoderCache | None = None
        self.bottom_layers = config.cached_encoder_layers  # > 0: self.cache holds the frozen bottom's output
        self.cross_kv: CrossKV | None = None
        self._objective_ready = False

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def _check_world(self, saved: dict, global_batch: int) -> None:
        """Another process count changes batch composition and the schedule: refuse, do not drift."""
        world, batch = saved.get("world_size", 1), saved.get("global_batch", global_batch)
        if world != self.world or batch != global_batch:
            raise TrainConfigError(
                f"--resume: {self.resumed_from} was trained by {world} process(es) with a global batch of "
                f"{batch}; this launch has {self.world} process(es) and a global batch of {global_batch}. "
                f"Resume with the same number of processes (accelerate launch --num_processes {world})"
            )

    def _check_run_dir(self, resume: bool) -> None:
        saved = self.run_dir / "config.yaml"
        if resume:
            if not saved.is_file():
                raise TrainConfigError(f"output_dir: {self.run_dir} holds no run to resume (no config.yaml)")
            differences = config_differences(load_recipe(saved), self.config)
            if differences:
                raise TrainConfigError(
                    f"--resume: the configuration differs from the saved run in {', '.join(differences)}; "
                    f"resume with the same settings (see {saved})"
                )
            return
        if list_checkpoints(self.ckpt_dir) or (self.run_dir / "summary.json").is_file():
            raise TrainConfigError(
                f"output_dir: {self.run_dir} already holds a run; pass --resume to continue it or choose another --out"
            )
        if self.is_main:
            atomic_write_text(saved, self.config.to_yaml())

    @property
    def _output_cache(self) -> EncoderCache | None:
        """The cache of the encoder's outputs (None when the encoder adapts, even if its bottom is cached)."""
        return None if self.bottom_layers else self.cache

    # ---- the step ------------------------------------------------------------------------------
    def _model_inputs(self, indices: list[int]) -> dict:
        examples = [self.data.examples[i] for i in indices]
        pad = self.backbone.processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")
        batch = collate_tokens(examples, pad, self.config.prompt_loss)
        device = self.accelerator.device
        dtype = next(self.model.parameters()).dtype
        inputs = {"decoder_input_ids": batch["decoder_input_ids"].to(device), "use_cache": False}
        kv = None
        if self.cache is not None and self.bottom_layers:
            keys = [utterance_key(e.item.audio) for e in examples]
            # The encoder's prefix entry runs only its adapted layers on these (features.encoder_prefix).
            inputs["input_features"] = self.cache.get(keys).to(device, dtype=dtype)  # (B, 1500, D)
        elif self.cache is not None:
            keys = [utterance_key(e.item.audio) for e in examples]
            hidden = self.cache.get(keys).to(device, dtype=dtype)  # (B, 1500, D)
            inputs["encoder_outputs"] = (hidden,)
            if self.cross_kv is not None:
                kv = self.cross_kv.batch(keys, hidden)  # (2L, B, 1500, D): the frozen K/V, not recomputed
        else:
            features = log_mel_items(self.backbone.processor.feature_extractor, [e.item for e in examples])
            inputs["input_features"] = features.to(device, dtype=dtype)  # (B, mels, 3000)
        if self.config.augment.enabled:
            generator = mask_generator(
                self.config.seed, self.state["global_step"], self.accelerator.process_index
            )
            augment_inputs(inputs, [e.item.duration for e in examples], self.config.augment, generator)
        return {"inputs": inputs, "labels": batch["labels"].to(device), "cross_kv": kv,
                "languages": batch["languages"]}  # fmt: skip

    def _step_model(self) -> StepModel:
        """The model as the objective sees it; prepares the objective on the first step, when the
        encoder cache and the stored K/V (built in `run`, or by a benchmark) exist."""
        unwrapped = self.accelerator.unwrap_model(self.model)
        if not self._objective_ready:
            self.objective.prepare(ObjectiveSetup(
                config=self.config, backbone=self.backbone, model=unwrapped, examples=self.data.examples,
                device=self.accelerator.device, encoder_cache=self._output_cache,
            ))  # fmt: skip
            self._objective_ready = True
        return StepModel(module=self.model, head=base_model_of(unwrapped).proj_out, cross_kv=self.cross_kv)

    def _optimizer_step(self, group: list[list[int]]) -> dict:
        """One optimizer step over `group` (grad_accum global micro-batches); returns its metrics.

        The objective gives each micro-batch's summed loss; the normalisation by the global batch's
        label-token count is done here, the same for every objective.
        """
        local = [shard_batch(b, self.accelerator.process_index, self.world) for b in group]
        batches = [self._model_inputs(ix) for ix in local]
        n_local = sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in batches)
        n_global = self.accelerator.reduce(
            torch.tensor(float(n_local), device=self.accelerator.device), "sum"
        )
        loss_sum = torch.zeros((), device=self.accelerator.device)
        term_sums: dict[str, torch.Tensor] = {}  # only when the objective has more than one term
        model = self._step_model()
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            sync = contextlib.nullcontext() if last else self.accelerator.no_sync(self.model)
            with sync, self.accelerator.autocast():
                parts = self.objective.loss(model, batch)
                total = parts.total()
                # DDP averages gradients over processes; scale so the result is sum / n_global.
                self.accelerator.backward(total * self.world / n_global)
            loss_sum += total.detach()
            if parts.extra:
                for name, value in {TOKEN_TERM: parts.token_loss, **parts.extra}.items():
                    term_sums[name] = term_sums.get(name, 0.0) + value.detach().float()
        loss = (self.accelerator.reduce(loss_sum, "sum") / n_global).item()
        if not math.isfinite(loss):
            self._diverged(f"loss is {loss}")
        terms = self._loss_terms(term_sums, n_global)
        params = [p for p in self.model.parameters() if p.requires_grad]
        max_norm = self.config.optim.max_grad_norm or float("inf")
        grad_norm = float(self.accelerator.clip_grad_norm_(params, max_norm))
        # fp16's gradient scaler skips steps with inf gradients by design; bf16 and float32 have no scaler.
        if not math.isfinite(grad_norm) and self.precision != "fp16":
            self._diverged(f"gradient norm is {grad_norm}")
        lr = self.scheduler.get_last_lr()[0]
        crash_point("step")  # gradients computed, weights not yet updated
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        metrics = {"loss": loss, "lr": lr, "grad_norm": grad_norm, "samples": sum(len(b) for b in group),
                   "tokens": int(n_global.item())}  # fmt: skip
        return {**metrics, "loss_terms": terms} if terms else metrics

    def _loss_terms(self, sums: dict[str, torch.Tensor], n_global: torch.Tensor) -> dict[str, float]:
        """Each term's global sum / n_global (they add up to the loss); {} for a one-term objective,
        so its log lines stay as they were."""
        if not sums:
            return {}
        reduced = self.accelerator.reduce(torch.stack(list(sums.values())), "sum") / n_global  # (terms,)
        return dict(zip(sums, reduced.tolist(), strict=True))

    def _diverged(self, what: str) -> None:
        step, epoch = self.state["global_step"] + 1, self.state["epoch"] + 1
        good = list_checkpoints(self.ckpt_dir)
        kept = f"the last good checkpoint is {good[-1]}" if good else "no checkpoint had been saved yet"
        raise TrainingDiverged(
            f"{what} at step {step} (epoch {epoch}); stopped. Nothing was written for this step; {kept}. "
            "Lower the learning rate (optim.lr) or raise warmup, then retrain or --resume."
        )

    # ---- epochs, evaluation, checkpoints ---------------------------------------------------------
    def _save_checkpoint(self) -> None:
        rng_states = gather_object([rng_state()]) if self.world > 1 else [rng_state()]  # by rank
        if self.is_main:
            folder = self.ckpt_dir / f"step-{self.state['global_step']:08d}"
            unwrapped = self.accelerator.unwrap_model(self.model)
            save_checkpoint(folder, unwrapped, self.optimizer, self.scheduler, self.state, rng_states)
            crash_point("after-checkpoint")
            prune_checkpoints(self.ckpt_dir, self.config.keep_checkpoints)
        self.accelerator.wait_for_everyone()

    def _evaluate(self, epoch: int) -> dict | None:
        """Dev scores on the main process (broadcast to the others): {"wer", "wer_capped"}."""
        if not self.data.dev:
            return None
        scores = [None]
        if self.is_main:
            scores[0] = self._dev_scores(epoch)
        return broadcast_object_list(scores)[0] if self.world > 1 else scores[0]

    def _dev_scores(self, epoch: int) -> dict:
        unwrapped = self.accelerator.unwrap_model(self.model)
        unwrapped.eval()
        start = time.perf_counter()
        ev = self.config.eval
        backbone = Backbone(unwrapped, self.backbone.processor, self.config.model, self.precision)
        with torch.no_grad():
            result = evaluate_items(
                backbone, self.data.dev, DecodingOptions(beam_size=ev.beam_size, batch_size=ev.batch_size),
                # With a frozen encoder the dev set is encoded once, not every epoch.
                reuse_encoder_outputs=self._output_cache is not None,
            )  # fmt: skip
        unwrapped.train()
        crash_point("dev-eval")  # evaluated, nothing recorded yet
        overall = result["by_language"]["all"]
        wer, cer = overall[ev.normaliser]["wer"], overall[ev.normaliser]["cer"]
        capped = capped_wer(result.pop("utterances"), ev.normaliser)
        atomic_write_text(
            self.run_dir / "eval" / f"epoch-{epoch}.json",
            json.dumps(result, indent=2, ensure_ascii=False, allow_nan=False),
        )
        record = {"kind": "eval", "step": self.state["global_step"], "epoch": epoch, "dev_wer": wer,
                  "dev_wer_capped": capped, "dev_cer": cer, "dev_suspicious": overall["suspicious"],
                  "seconds": time.perf_counter() - start}  # fmt: skip
        self.log.write(record, self.state["global_step"])
        return {"wer": wer, "wer_capped": capped}

    def _end_epoch(self, epoch: int, seconds: float, cache_seconds: float, losses: list[float]) -> bool:
        """Evaluate, keep the best adapter, decide early stopping. Returns True to stop.

        `seconds` is the epoch's training time, `cache_seconds` what this run spent building the
        encoder cache before it (the first epoch of a run pays for encoding). The history's "seconds"
        are these two; "dev_seconds", scoring the dev set, are kept apart.
        """
        dev_start = time.perf_counter()
        scores = self._evaluate(epoch + 1) or {}
        dev_seconds = time.perf_counter() - dev_start
        # The score that keeps `best/`, decays and stops (eval.select_by); both WERs go in the history.
        score = scores.get("wer" if self.config.eval.select_by == "wer" else "wer_capped")
        state = self.state
        state["epoch_seconds"].append(seconds + cache_seconds)
        mean_loss = sum(losses) / len(losses) if losses else None
        # Counted per step, not len(examples): a language-balanced epoch repeats the smaller languages.
        samples = state.get("epoch_samples", len(self.data.examples) * len(losses) / self.steps_per_epoch)
        state["history"].append({"epoch": epoch + 1, "train_loss": mean_loss, "dev_wer": scores.get("wer"),
                                 "dev_wer_capped": scores.get("wer_capped"), "dev_score": score,
                                 "seconds": seconds + cache_seconds, "train_seconds": seconds,
                                 "cache_seconds": cache_seconds, "dev_seconds": dev_seconds,
                                 "samples_per_second": samples / seconds})  # fmt: skip
        stop = False
        if score is not None:
            improved = state["best_wer"] is None or score < state["best_wer"]
            if improved:
                state["best_wer"], state["best_epoch"], state["bad_epochs"] = score, epoch + 1, 0
                if self.is_main:
                    crash_point("best-save")
                    card = adapter_card(self.config, self.data, self.state)
                    save_adapter(self.accelerator.unwrap_model(self.model), self.config.adapter,
                                 self.run_dir / "best", base_model=self.config.model, card=card,
                                 base_fingerprint=self.base_fingerprint)  # fmt: skip
            else:
                state["bad_epochs"] += 1
                patience = self.config.eval.patience
                stop = bool(patience) and state["bad_epochs"] >= patience
            if not stop and self.prune is not None:
                # Every process holds the same history (the dev WER is broadcast), so all stop together.
                reason = self.prune(state["history"])
                if reason:
                    state["pruned"], stop = reason, True
                    log.info("epoch %d: pruned: %s", epoch + 1, reason)
            if not improved and not stop:
                lr = decay_on_plateau(self.scheduler, self.config.optim.plateau_factor)
                if lr is not None:
                    log.info("epoch %d: dev WER not better; learning rate now %.2e", epoch + 1, lr)
        state["epoch"], state["step_in_epoch"] = epoch + 1, 0
        state["epoch_losses"], state["epoch_train_seconds"], state["epoch_samples"] = [], 0.0, 0
        state["stopped_early"] = stop
        return stop

    def _train_epoch(self, epoch: int, bar: tqdm) -> tuple[list[float], bool]:
        """Returns the step losses and whether stop_after_steps was reached."""
        accum = self.config.optim.grad_accum
        micro = global_micro_batches(self.config, self.data.lengths, self.world, epoch, self.data.languages)
        losses = self.state.setdefault("epoch_losses", [])
        for step_in_epoch in range(self.state["step_in_epoch"], self.steps_per_epoch):
            start = time.perf_counter()
            metrics = self._optimizer_step(micro[step_in_epoch * accum : (step_in_epoch + 1) * accum])
            seconds = time.perf_counter() - start
            self.state["global_step"] += 1
            self.state["step_in_epoch"] = step_in_epoch + 1
            self.state["epoch_train_seconds"] = self.state.get("epoch_train_seconds", 0.0) + seconds
            self.state["epoch_samples"] = self.state.get("epoch_samples", 0) + metrics["samples"]
            losses.append(metrics["loss"])
            step = self.state["global_step"]
            record = {"kind": "train", "step": step, "epoch": epoch + (step_in_epoch + 1) / self.steps_per_epoch,
                      **metrics, "samples_per_s": metrics["samples"] / seconds, "seconds": seconds}  # fmt: skip
            self.log.write(record, step)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{metrics['loss']:.3f}", lr=f"{metrics['lr']:.2e}")
            stop_now = bool(self.config.stop_after_steps) and step >= self.config.stop_after_steps
            last_in_epoch = step_in_epoch + 1 == self.steps_per_epoch
            if not last_in_epoch and (
                stop_now or (self.config.checkpoint_every and step % self.config.checkpoint_every == 0)
            ):
                self._save_checkpoint()
            if stop_now:
                return losses, True
        return losses, False

    def run(self) -> dict:
        """Train to the end (or early stop, or stop_after_steps); returns the summary."""
        start_run = time.perf_counter()
        cache_seconds = 0.0
        if self.config.uses_encoder_cache or self.bottom_layers:
            t0 = time.perf_counter()
            self.cache, _, encoded = build_encoder_cache(
                self.accelerator, self.backbone, self.data.examples, self.config.eval.batch_size,
                bottom_layers=self.bottom_layers,
            )  # fmt: skip
            unwrapped = self.accelerator.unwrap_model(self.model)
            if self.bottom_layers:
                install_prefix_entry(base_model_of(unwrapped).model.encoder, self.bottom_layers)
            else:
                self.cross_kv = build_cross_kv(
                    self.config, unwrapped, self.cache, self.data.examples, self.precision
                )
            cache_seconds = time.perf_counter() - t0  # encoding and the K/V projections: the cold-cache cost
            self.state["cache_seconds"] += cache_seconds
            self.state.setdefault("cache_encoded", 0)
            self.state["cache_encoded"] += encoded
        if self.config.eval.at_start and self.state["global_step"] == 0 and self.data.dev:
            self._evaluate(0)
        bar = tqdm(total=self.total_steps, initial=self.state["global_step"], unit="step", desc="train",
                   disable=not (self.is_main and self.config.progress_bar))  # fmt: skip
        stopped = False
        try:
            # A run that stopped early stays stopped: --resume then only writes final/ and the summary.
            first_epoch = self.config.optim.epochs if self.state.get("stopped_early") else self.state["epoch"]
            early = bool(self.state.get("stopped_early"))
            for epoch in range(first_epoch, self.config.optim.epochs):
                losses, stopped = self._train_epoch(epoch, bar)
                losses, seconds = list(losses), self.state["epoch_train_seconds"]
                if stopped and self.state["step_in_epoch"] < self.steps_per_epoch:
                    break
                early = self._end_epoch(epoch, seconds, cache_seconds, losses)
                cache_seconds = 0.0
                self._save_checkpoint()
                if early or stopped:
                    break
        finally:
            bar.close()
        summary = run_summary(self, time.perf_counter() - start_run, stopped, early)
        if self.is_main and not stopped:
            save_adapter(self.accelerator.unwrap_model(self.model), self.config.adapter, self.run_dir / "final",
                         base_model=self.config.model, card=adapter_card(self.config, self.data, self.state), base_fingerprint=self.base_fingerprint)  # fmt: skip
            crash_point("final-save")  # final/ written, summary.json not yet
            atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2, allow_nan=False))
        self.accelerator.wait_for_everyone()
        self.log.close()
        self.release()
        return summary


def train(config: TrainConfig, resume: bool = False, prune: Pruner | None = None) -> dict:
    """Train under `config` (or continue its run with `resume`); returns the summary dict.

    The run folder gets config.yaml, train_log.jsonl, tensorboard/, checkpoints/, eval/, best/ (the
    best dev-WER adapter), final/ and summary.json. `prune` (from `dama tune`) is asked after each
    scored epoch, with the epoch history so far, whether to stop the run: a reason to stop, or None.
    """
    trainer = Trainer(config, resume=resume, prune=prune)
    try:
        return trainer.run()
    finally:
        trainer.release()
