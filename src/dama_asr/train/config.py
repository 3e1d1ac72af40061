"""Training configuration: frozen dataclasses validated once, YAML recipes mapped onto them.

A recipe is the nested form of `TrainConfig.to_dict()`:

    model: whisper-base
    adapter: {method: dama, r_high: 32, r_low: 8}
    optim: {epochs: 5, batch_size: 8, lr: 1.0e-3}
    eval: {patience: 2, max_utterances: 100}

`load_recipe(path, overrides)` applies dotted overrides (`{"optim.lr": 5e-4}`) on top, and every
run writes the resolved config to `<output_dir>/config.yaml`, which `load_recipe` reads back.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from dama_asr.adapters import AdapterConfig, AdapterConfigError
from dama_asr.errors import DamaError
from dama_asr.precision import PRECISIONS
from dama_asr.train.objectives import get_objective_class, objective_names
from dama_asr.train.samplers import SAMPLERS
from dama_asr.train.schedules import SCHEDULES

# optim.epochs 0 means: a cap this high for the plateau schedule (it stops itself), this many otherwise.
DEFAULT_MAX_EPOCHS = 30
DEFAULT_EPOCHS = 5
DEV_SELECTION = ("wer", "capped_wer")  # eval.select_by
# Fields that may differ between a run and its `--resume` (they steer the process, not the maths).
RUN_CONTROL_FIELDS = frozenset({"stop_after_steps", "progress_bar"})


class TrainConfigError(DamaError, ValueError):
    """A training configuration that cannot work; the message names the field."""


@dataclass(frozen=True)
class OptimConfig:
    """AdamW over the trainable parameters, warmup then decay (`dama_asr.train.schedules`).

    batch_size is per process; the global batch is batch_size x grad_accum x processes.
    schedule: 'plateau' (constant after warmup, x plateau_factor after each epoch without a better dev
    WER, stopped after eval.patience of them: trains until converged, `epochs` is only a cap), 'linear' or
    'cosine' (decay to 0 over `epochs`), 'constant'; 'auto' (the default): plateau when the run has a dev
    set and a patience, else linear. epochs 0 (the default): 30 (a cap) with plateau, else 5.
    TrainConfig stores both resolved, so a run's config.yaml says what ran.
    warmup_steps > 0 wins over warmup_ratio: a fraction of all optimizer steps, or for 'plateau', whose
    length is not known in advance, of one epoch's.
    """

    epochs: int = 0
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    warmup_steps: int = 0
    schedule: str = "auto"
    plateau_factor: float = 0.5
    max_grad_norm: float = 1.0
    adam_betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        _positive(self, "batch_size", "grad_accum")
        if self.epochs < 0:
            raise TrainConfigError(f"optim.epochs: must be >= 1 (0 = auto), got {self.epochs}")
        if not self.lr > 0:
            raise TrainConfigError(f"optim.lr: must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise TrainConfigError(f"optim.weight_decay: must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise TrainConfigError(f"optim.warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")
        if self.warmup_steps < 0:
            raise TrainConfigError(f"optim.warmup_steps: must be >= 0, got {self.warmup_steps}")
        if self.schedule not in ("auto", *SCHEDULES):
            raise TrainConfigError(
                f"optim.schedule: one of auto, {', '.join(SCHEDULES)}, got {self.schedule!r}"
            )
        if not 0.0 < self.plateau_factor <= 1.0:
            raise TrainConfigError(f"optim.plateau_factor: must be in (0, 1], got {self.plateau_factor}")
        if self.max_grad_norm < 0:
            raise TrainConfigError(
                f"optim.max_grad_norm: must be >= 0 (0 = no clipping), got {self.max_grad_norm}"
            )
        object.__setattr__(self, "adam_betas", tuple(float(b) for b in self.adam_betas))
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise TrainConfigError(f"optim.adam_betas: two numbers in [0, 1), got {self.adam_betas}")

    def warmup_for(self, total_steps: int, steps_per_epoch: int) -> int:
        if self.warmup_steps:
            return self.warmup_steps
        span = steps_per_epoch if self.schedule == "plateau" else total_steps
        return int(round(self.warmup_ratio * span))


@dataclass(frozen=True)
class EvalConfig:
    """Dev WER after every epoch, early stopping on it, the best epoch's adapter kept in `best/`.

    normaliser: which WER decides (raw, whisper, script_safe, lenient; script_safe keeps combining marks,
    so it is safe for every script).  patience: stop after this many epochs without improvement (0 = never).
    max_utterances: score a fixed, seeded sample of the dev set (0 = all).
    select_by: what keeps the best epoch, decays the plateau schedule and stops early: 'wer', or
    'capped_wer' (each utterance's errors capped at its length: one looping hypothesis cannot swing it,
    `dama_asr.evaluate.capped_wer`). Both are logged every epoch.
    The defaults are the shipped recipes' (recipes/*.yaml): `dama train` with or without one behaves alike.
    """

    enabled: bool = True
    normaliser: str = "script_safe"
    patience: int = 3
    max_utterances: int = 100
    batch_size: int = 16
    beam_size: int = 1
    at_start: bool = False
    select_by: str = "wer"

    def __post_init__(self) -> None:
        from dama_asr.scoring import NORMALISERS

        if self.select_by not in DEV_SELECTION:
            raise TrainConfigError(
                f"eval.select_by: one of {', '.join(DEV_SELECTION)}, got {self.select_by!r}"
            )
        if self.normaliser not in NORMALISERS:
            raise TrainConfigError(
                f"eval.normaliser: one of {', '.join(NORMALISERS)}, got {self.normaliser!r}"
            )
        _positive(self, "batch_size", "beam_size")
        if self.patience < 0 or self.max_utterances < 0:
            raise TrainConfigError("eval.patience and eval.max_utterances: must be >= 0")


@dataclass(frozen=True)
class AugmentConfig:
    """SpecAugment-style masks on what each training step feeds the model (`dama_asr.train.augment`):
    log-mel features, or the cached encoder states when the encoder (or its bottom) is frozen.

    time_mask_share: about this share of each utterance's frames is masked, in spans of time_mask_ms.
    feature_mask_share: about this share of the channels (mel bins, or hidden channels of cached
    states), in bands of feature_mask_width. 0 = off (the default).
    speed_factors / noise_snr_db: perturbed copies added to the training set (`dama_asr.data.perturb`),
    one per speed factor (Kaldi's 3-way perturbation: [0.9, 1.1]) and one per SNR in dB of added
    noise_colour ('pink' or 'white') noise. Empty = none (the default). Copies are audio, so they work
    with every cache and objective.
    """

    time_mask_share: float = 0.0
    time_mask_ms: float = 100.0
    feature_mask_share: float = 0.0
    feature_mask_width: int = 10
    speed_factors: tuple[float, ...] = ()
    noise_snr_db: tuple[float, ...] = ()
    noise_colour: str = "pink"

    def __post_init__(self) -> None:
        for name in ("speed_factors", "noise_snr_db"):
            value = getattr(self, name)
            values = value if isinstance(value, list | tuple) else ([] if value is None else [value])
            try:
                object.__setattr__(self, name, tuple(float(v) for v in values))
            except (TypeError, ValueError):
                raise TrainConfigError(f"augment.{name}: a list of numbers, got {value!r}") from None
        try:
            self.copy_variants()
        except ValueError as err:
            raise TrainConfigError(f"augment: {err}") from None
        for name in ("time_mask_share", "feature_mask_share"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise TrainConfigError(f"augment.{name}: must be in [0, 1), got {getattr(self, name)}")
        if not self.time_mask_ms > 0:
            raise TrainConfigError(f"augment.time_mask_ms: must be > 0, got {self.time_mask_ms}")
        _positive(self, "feature_mask_width")

    @property
    def enabled(self) -> bool:
        """Whether steps mask their input (the perturbed copies are `copy_variants`)."""
        return self.time_mask_share > 0 or self.feature_mask_share > 0

    def copy_variants(self) -> list:
        """The perturbed copies each training utterance gets (`dama_asr.data.perturb.Variant`s)."""
        from dama_asr.data.perturb import variants

        return variants(self.speed_factors, self.noise_snr_db, self.noise_colour)


@dataclass(frozen=True)
class ReplayConfig:
    """Rehearsal against forgetting: utterances of languages the model already knows (English, say),
    mixed into the training set so that the adapter keeps them working (`dama_asr.train.setup`).

    train: a manifest of such utterances ('' = no replay, the default).
    share: how many replay utterances per training utterance (0.25: one for every four), drawn once per
    run from `train` with the run's seed (the whole manifest where it holds fewer). They train like the
    others, under their own language token, and count in neither the training hours nor the dev choice.
    """

    train: str = ""
    share: float = 0.25

    def __post_init__(self) -> None:
        if not 0.0 < self.share <= 4.0:
            raise TrainConfigError(f"replay.share: must be in (0, 4], got {self.share}")

    @property
    def enabled(self) -> bool:
        return bool(self.train)


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    model: backbone name or folder (see `load_backbone`).  train/dev: manifests (dev may be '' to
    skip evaluation).  output_dir: the run folder (config, logs, checkpoints, best/ and final/).
    precision: 'auto' (bf16 autocast where the hardware computes bf16 natively, else float32), 'no'
    (float32), 'bf16' or 'fp16' (forced; fp16 falls back to float32 on a CPU). The summary records
    the precision that ran.
    encoder_cache: reuse cached encoder outputs when the adapter leaves the encoder frozen, and the
    frozen bottom's outputs when it adapts only encoder layers >= adapter.encoder_from.
    cross_kv_cache_gib: with the encoder cache, keep the frozen cross-attention keys/values of up to this
    many GiB of utterances in RAM (-1 = a quarter of the available RAM on a CPU, none on a GPU; 0 = off,
    the default: at 18 MB per utterance it saves about a fifth of a cached bf16 step, and memory matters
    more on the machines this runs on; benchmarks/speed/ measures both).
    length_grouped: batches of similar transcript length (sorted within shuffled mega-batches).
    sampler: how an epoch's examples are batched: 'length' (shuffled, length-grouped; every example once),
    'language-balanced' (each batch holds its languages in equal shares, smaller languages oversampled
    up to the largest) or 'language-homogeneous' (one language per batch, languages interleaved); the
    exact rules are in `dama_asr.train.samplers`.
    objective: the training loss by name (`dama_asr.train.objectives`): 'asr' = token cross-entropy.
    objective_options: that objective's own options (its `option_defaults` list them), stored resolved.
    checkpoint_every: optimizer steps between checkpoints (0 = end of each epoch only); the last
    `keep_checkpoints` are kept.  stop_after_steps: stop (with a checkpoint) after this many optimizer
    steps; the schedule still spans all epochs, so `--resume` continues the same run.
    prompt_loss: also train on the forced <|lang|><|transcribe|><|notimestamps|> tokens.
    augment: SpecAugment-style masking of each step's input (`AugmentConfig`; off by default).
    replay: utterances of already-known languages mixed in against forgetting (`ReplayConfig`; off).
    """

    model: str = "whisper-base"
    train: str = ""
    dev: str = ""
    output_dir: str = "runs/dama"
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    gradient_checkpointing: bool = False
    length_grouped: bool = True
    mega_batch_factor: int = 50
    sampler: str = "length"
    objective: str = "asr"
    objective_options: dict = field(default_factory=dict)
    encoder_cache: bool = True
    cross_kv_cache_gib: float = 0.0
    prompt_loss: bool = False
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    stop_after_steps: int = 0
    log_dir: str = ""
    progress_bar: bool = True

    def __post_init__(self) -> None:
        if not self.train:
            raise TrainConfigError("train: a training manifest is required")
        if not self.model:
            raise TrainConfigError("model: a model name or folder is required")
        if self.precision not in PRECISIONS:
            raise TrainConfigError(f"precision: one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        _positive(self, "mega_batch_factor", "keep_checkpoints")
        if self.sampler not in SAMPLERS:
            raise TrainConfigError(f"sampler: one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.objective not in objective_names():
            raise TrainConfigError(
                f"objective: one of {', '.join(objective_names())}, got {self.objective!r}"
            )
        try:
            options = get_objective_class(self.objective).resolve_options(self.objective_options)
        except ValueError as err:
            raise TrainConfigError(str(err)) from None
        object.__setattr__(self, "objective_options", options)
        if self.checkpoint_every < 0 or self.stop_after_steps < 0:
            raise TrainConfigError("checkpoint_every and stop_after_steps: must be >= 0")
        if self.augment.enabled and self.objective != "asr":
            raise TrainConfigError(
                f"augment: masking is for the 'asr' objective; objective {self.objective!r} compares the "
                "model with targets computed from the unmasked input. Set augment shares to 0"
            )
        if self.augment.enabled and self.cross_kv_cache_gib:
            raise TrainConfigError(
                "augment: the stored cross-attention K/V (cross_kv_cache_gib) come from unmasked encoder "
                "outputs; set cross_kv_cache_gib 0 to mask them"
            )
        stops_on_dev = bool(self.dev and self.eval.enabled and self.eval.patience)
        schedule = self.optim.schedule
        if schedule == "auto":
            schedule = "plateau" if stops_on_dev else "linear"
        if schedule == "plateau" and not stops_on_dev:
            raise TrainConfigError(
                "optim.schedule: 'plateau' decays and stops on dev WER, so it needs a dev set (--dev) and "
                "eval.patience >= 1; without one choose a fixed length: --schedule linear --epochs N"
            )
        epochs = self.optim.epochs or (DEFAULT_MAX_EPOCHS if schedule == "plateau" else DEFAULT_EPOCHS)
        object.__setattr__(self, "optim", dataclasses.replace(self.optim, schedule=schedule, epochs=epochs))

    @property
    def uses_encoder_cache(self) -> bool:
        return self.encoder_cache and not self.adapter.adapts_encoder

    @property
    def cached_encoder_layers(self) -> int:
        """How many frozen bottom encoder layers are cached (0: none; the encoder runs every step)."""
        if self.encoder_cache and self.adapter.adapts_encoder and self.adapter.encoder_from > 1:
            return self.adapter.encoder_from - 1
        return 0

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["adapter"] = self.adapter.to_dict()
        out["optim"]["adam_betas"] = list(self.optim.adam_betas)
        for name in ("speed_factors", "noise_snr_db"):  # YAML's safe dumper has no tuples
            out["augment"][name] = list(out["augment"][name])
        return out

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        return _build(cls, data, "")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


def _positive(obj: Any, *names: str) -> None:
    prefix = {OptimConfig: "optim.", EvalConfig: "eval.", AugmentConfig: "augment."}.get(type(obj), "")
    for name in names:
        if getattr(obj, name) < 1:
            raise TrainConfigError(f"{prefix}{name}: must be >= 1, got {getattr(obj, name)}")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """YAML 1.1 reads `1e-3` as a string and users write `"8"`: cast scalars to the declared type."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    try:
        if hint is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
                    raise ValueError(value)
                return value.lower() in ("true", "yes", "1", "on")
            return bool(value)
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if hint is float:
            return float(value)
        if hint is str:
            return str(value)
    except (TypeError, ValueError):
        raise TrainConfigError(f"{where}: expected {hint.__name__}, got {value!r}") from None
    return value


def _build(cls: type, data: dict, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise TrainConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    if cls is AdapterConfig:
        try:
            return AdapterConfig.from_dict(data)
        except (AdapterConfigError, TypeError) as err:
            raise TrainConfigError(f"adapter: {err}") from err
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise TrainConfigError(
            f"{prefix}{unknown[0]}: unknown option; valid: {', '.join(sorted(prefix + k for k in known))}"
        )
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = value if isinstance(value, hint) else _build(hint, value or {}, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, prefix + name)
    return cls(**kwargs)


def apply_overrides(data: dict, overrides: dict[str, Any] | None) -> dict:
    """Set dotted keys (`optim.lr`, `adapter.r_high`) in a nested dict; returns a new dict."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        head, _, rest = key.partition(".")
        if rest:
            section = out.setdefault(head, {})
            if not isinstance(section, dict):
                raise TrainConfigError(f"{head}: is not a section, cannot set {key}")
            out[head] = apply_overrides(section, {rest: value})
        else:
            out[head] = value
    return out


def load_recipe(path: str | Path | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A TrainConfig from a YAML recipe (or None: the defaults) with dotted overrides on top."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise TrainConfigError(f"recipe {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise TrainConfigError(f"recipe {path} is not valid YAML: {err}") from err
        if not isinstance(data, dict):
            raise TrainConfigError(f"recipe {path}: the top level must be a mapping")
    return TrainConfig.from_dict(apply_overrides(data, overrides))


def config_differences(a: TrainConfig, b: TrainConfig) -> list[str]:
    """Dotted names of the fields that differ, ignoring run-control fields."""
    flat_a, flat_b = _flatten(a.to_dict()), _flatten(b.to_dict())
    return sorted(
        k
        for k in flat_a.keys() | flat_b.keys()
        if k not in RUN_CONTROL_FIELDS and flat_a.get(k) != flat_b.get(k)
    )


def _flatten(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and key != "extra":
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out
