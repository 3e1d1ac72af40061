"""Everything a run needs before its first step: validated data, the adapted model, the optimizer,
the schedule, the encoder cache. Kept apart from the loop so each piece can be called on its own."""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from torch import nn

from dama_asr.accounting import SkippedItems
from dama_asr.adapters import apply_adapter, base_model_of
from dama_asr.backbone.loading import Backbone
from dama_asr.data.manifest import Utterance, read_manifest
from dama_asr.data.perturb import perturbed_copies
from dama_asr.errors import DamaError
from dama_asr.faults import crash_point
from dama_asr.features.cross_kv import CrossKV, budget_bytes, can_cache
from dama_asr.features.encoder_cache import (
    EncoderCache,
    encoder_function,
    fill_cache,
    utterance_key,
    whisper_fingerprint,
)
from dama_asr.features.encoder_prefix import check_prefix, prefix_fingerprint, prefix_function
from dama_asr.precision import compute_dtype, hold_frozen_weights, resolve_precision
from dama_asr.train.config import OptimConfig, TrainConfig
from dama_asr.train.data import Example, model_item_languages, prepare_examples
from dama_asr.train.samplers import sampler_batches
from dama_asr.train.schedules import make_schedule

log = logging.getLogger(__name__)


@dataclass
class RunData:
    """Validated training examples and the dev items (a fixed, seeded sample)."""

    examples: list[Example]
    dev: list[Utterance]
    skipped: SkippedItems
    lengths: list[int] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)  # each example's Whisper code, for the samplers
    perturbed: int = 0  # perturbed copies of the originals, after them
    replayed: int = 0  # replay utterances (`replay`), last

    @property
    def originals(self) -> list[Example]:
        """The training manifest's own examples: neither perturbed copies nor replay."""
        return self.examples[: len(self.examples) - self.perturbed - self.replayed]

    def __post_init__(self) -> None:
        self.lengths = [e.length for e in self.examples]
        self.languages = [e.language for e in self.examples]


def make_accelerator(config: TrainConfig) -> Accelerator:
    """CPU when asked or when there is no GPU; the precision resolved for that device (`auto`: bf16
    autocast where the hardware computes bf16 natively, float32 elsewhere; see `dama_asr.precision`)."""
    cpu = config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available())
    device = "cpu" if cpu else (config.device if config.device.startswith("cuda") else "cuda")
    precision = resolve_precision(config.precision, device)
    # accelerate keeps one process-wide state and refuses a second Accelerator at another precision;
    # a notebook or a study that runs a float32 cell after a bf16 one needs it forgotten (the process
    # group, in PartialState, is kept).
    current = AcceleratorState._shared_state.get("_mixed_precision")
    if current is not None and current != precision:
        AcceleratorState._reset_state(reset_partial_state=False)
    # Gradient accumulation is done by the loop (exact token-weighted averaging), not by accelerate.
    return Accelerator(cpu=cpu, mixed_precision=precision)


def load_run_data(config: TrainConfig, backbone: Backbone) -> RunData:
    """Read and validate both manifests before any model work (errors name the item)."""
    tokenizer = backbone.processor.tokenizer
    known = backbone.languages
    max_positions = backbone.model.config.max_target_positions
    examples, skipped = prepare_examples(
        read_manifest(config.train), tokenizer, known, max_positions, model_name=backbone.name
    )
    copies = perturbed_examples(examples, config, skipped)
    replay = replay_examples(config, backbone, len(examples), skipped)
    dev: list[Utterance] = []
    if config.dev and config.eval.enabled:
        dev = read_manifest(config.dev)
        model_item_languages(dev, known, backbone.name)
        n = config.eval.max_utterances
        if n and len(dev) > n:
            chosen = sorted(random.Random(config.seed).sample(range(len(dev)), n))
            dev = [dev[i] for i in chosen]
    return RunData(examples=examples + copies + replay, dev=dev, skipped=skipped, perturbed=len(copies),
                   replayed=len(replay))  # fmt: skip


def replay_examples(
    config: TrainConfig, backbone: Backbone, originals: int, skipped: SkippedItems
) -> list[Example]:
    """`replay.share` x `originals` utterances of `replay.train`, a seeded sample fixed for the run (so the
    encoder cache holds them once and a resumed run trains on the same ones). Validated like the training
    manifest; an unusable item is named as a replay item."""
    if not config.replay.enabled:
        return []
    items = read_manifest(config.replay.train)
    wanted = min(len(items), max(1, round(config.replay.share * originals)))
    if wanted < len(items):
        chosen = sorted(random.Random(f"replay:{config.seed}").sample(range(len(items)), wanted))
        items = [items[i] for i in chosen]
    tokenizer = backbone.processor.tokenizer
    try:
        examples, replay_skipped = prepare_examples(
            items, tokenizer, backbone.languages, backbone.model.config.max_target_positions,
            model_name=backbone.name,
        )  # fmt: skip
    except DamaError as err:
        raise type(err)(f"replay manifest {config.replay.train}: {err}") from None
    for reason, count in replay_skipped.counts.items():
        skipped.counts[f"replay: {reason}"] += count
        skipped.examples.setdefault(f"replay: {reason}", list(replay_skipped.examples[reason]))
    log.info("replay: %d utterance(s) of %s mixed into %d", len(examples),
             ", ".join(sorted({e.language for e in examples})), originals)  # fmt: skip
    return examples


def perturbed_examples(examples: list[Example], config: TrainConfig, skipped: SkippedItems) -> list[Example]:
    """The training examples' perturbed copies (`augment.speed_factors`, `augment.noise_snr_db`): the
    same transcripts on speed-changed or noisy audio, written once under DAMA_HOME/cache/perturbed."""
    chosen = config.augment.copy_variants()
    if not chosen:
        return []
    copies, too_long = perturbed_copies([e.item for e in examples], chosen)
    for copy_id in too_long:
        skipped.add("perturbed copy longer than 30 s (not added)", copy_id)
    if too_long:
        log.warning("left out %d perturbed cop(ies) longer than Whisper's 30 s window", len(too_long))
    return [dataclasses.replace(examples[i], item=copy) for i, copy in copies]


def prepare_model(config: TrainConfig, backbone: Backbone, device: torch.device) -> nn.Module:
    """The model to train (a PeftModel, or the Whisper itself for `full`), in train mode on `device`.

    Under bf16 the frozen base's matmul weights are held in bf16 (after the adapter's inits have read
    them in float32), so autocast does not re-cast them on every step; trainable weights stay float32.
    Not for methods that save the whole model: its frozen part would be saved rounded.
    """
    if config.gradient_checkpointing:
        backbone.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    backbone.model.config.use_cache = False
    model = apply_adapter(backbone.model, config.adapter)
    if not config.adapter.saves_full_model:
        hold_frozen_weights(model, backbone.precision)
    model.to(device)
    model.train()
    return model


def make_optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    """AdamW over trainable parameters only; no weight decay on biases and norms (1-d tensors)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": optim.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(groups, lr=optim.lr, betas=optim.adam_betas)


def steps_per_epoch(
    config: TrainConfig, num_examples: int, world_size: int, languages: Sequence[str] | None = None
) -> int:
    """Optimizer steps per epoch; the same for every epoch (no sampler's batch count depends on the
    epoch), so the schedule can be laid out before the first step."""
    micro = len(global_micro_batches(config, [0] * num_examples, world_size, 0, languages))
    return -(-micro // config.optim.grad_accum)


def make_scheduler(
    optimizer: torch.optim.Optimizer, optim: OptimConfig, total_steps: int, steps_per_epoch: int
):
    warmup = optim.warmup_for(total_steps, steps_per_epoch)
    return make_schedule(optimizer, optim.schedule, warmup, total_steps)


def global_micro_batches(
    config: TrainConfig,
    lengths: Sequence[int],
    world_size: int,
    epoch: int,
    languages: Sequence[str] | None = None,
) -> list[list[int]]:
    """The epoch's global micro-batches (batch_size x processes examples each), in `config.sampler`'s
    order (see `samplers`); `languages` (one code per example) is needed by the language samplers.

    With several processes, a batch smaller than the number of processes is dropped: every process
    must take part in every gradient all-reduce.
    """
    batches = sampler_batches(
        config.sampler,
        lengths,
        languages,
        config.optim.batch_size * world_size,
        seed=config.seed,
        epoch=epoch,
        length_grouped=config.length_grouped,
        mega_batch_factor=config.mega_batch_factor,
    )
    return [b for b in batches if len(b) >= world_size]


def _with_crash_point(update):
    def on_batch(n: int) -> None:
        update(n)
        crash_point("encoder-cache")  # some utterances encoded and stored, others not yet

    return on_batch


def build_encoder_cache(
    accelerator: Accelerator,
    backbone: Backbone,
    examples: Sequence[Example],
    batch_size: int,
    bottom_layers: int = 0,
) -> tuple[EncoderCache, float, int]:
    """Encode the missing utterances (split across processes), then every process reads the cache.

    bottom_layers: 0 caches the encoder's output; k > 0 the hidden states after its frozen layer k (the
    bottom of an encoder adapted from layer k+1, `features.encoder_prefix`).
    Returns (cache, seconds this process spent encoding, number of utterances encoded by all processes).
    """
    whisper = base_model_of(backbone.model)
    fe = backbone.processor.feature_extractor
    if bottom_layers:
        check_prefix(whisper, bottom_layers)
        fingerprint = prefix_fingerprint(whisper, fe, backbone.precision, bottom_layers)
        encode = prefix_function(whisper, fe, accelerator.device, backbone.precision, bottom_layers)
    else:
        fingerprint = whisper_fingerprint(whisper, fe, backbone.precision)
        encode = encoder_function(whisper, fe, accelerator.device, backbone.precision)
    cache = EncoderCache(
        fingerprint, frame_shape=(whisper.config.max_source_positions, whisper.config.d_model)
    )
    items = [e.item for e in examples]
    keys = [utterance_key(item.audio) for item in items]
    missing = set(cache.missing(keys))
    mine = [(k, item) for k, item in zip(keys, items, strict=True) if k in missing]
    mine = mine[accelerator.process_index :: accelerator.num_processes]
    # A shard that goes bad mid-run (a disk error, `dama cache prune` meanwhile) is re-encoded, not fatal.
    cache.attach_encoder(items, keys, encode, batch_size)
    from tqdm.auto import tqdm

    desc = f"encoder layers 1-{bottom_layers} cache" if bottom_layers else "encoder cache"
    with tqdm(total=len(mine), desc=desc, unit="utt", disable=not accelerator.is_main_process) as bar:
        _, seconds = fill_cache(
            cache,
            [i for _, i in mine],
            [k for k, _ in mine],
            encode,
            batch_size,
            on_batch=_with_crash_point(bar.update),
        )
    accelerator.wait_for_everyone()
    cache.reload()
    absent = cache.missing(keys)
    if absent:
        raise RuntimeError(f"encoder cache {cache.dir} lacks {len(absent)} utterance(s) after building it")
    return cache, seconds, len(missing)


def build_cross_kv(
    config: TrainConfig, model: nn.Module, cache: EncoderCache, examples: Sequence[Example], precision: str
) -> CrossKV | None:
    """The frozen cross-attention K/V of as many training utterances as the budget holds (None when the
    projections train, or the budget is 0). Projected from the encoder cache, a batch of 8 at a time."""
    whisper = base_model_of(model)
    device = next(whisper.parameters()).device
    budget = budget_bytes(config.cross_kv_cache_gib, device)
    if budget <= 0 or not can_cache(whisper):
        return None
    kv = CrossKV(whisper, budget, compute_dtype(precision) or torch.float32)
    keys = [utterance_key(e.item.audio) for e in examples]
    for first in range(0, len(keys), 8):
        chunk = keys[first : first + 8]
        if not kv.fill(chunk, cache.get(chunk).to(device)):
            break
    log.info("cross-attention K/V of %d of %d utterances kept in RAM (%.2f GiB; the rest recomputed per step)",
             len(kv), len(keys), kv.used / 2**30)  # fmt: skip
    return kv
