"""Adapter configuration: one frozen dataclass for every method, validated once at the edge."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from dama_asr.adapters.registry import MethodSpec, UnknownMethodError, get_method, method_names
from dama_asr.errors import DamaError

# Short names of the linear maps in one Whisper layer, as transformers names them.
DECODER_LINEARS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.out_proj",
    "encoder_attn.q_proj",
    "encoder_attn.k_proj",
    "encoder_attn.v_proj",
    "encoder_attn.out_proj",
    "fc1",
    "fc2",
)
ENCODER_LINEARS = (
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.out_proj",
    "fc1",
    "fc2",
)
TARGET_ALIASES = {
    "all": DECODER_LINEARS,
    # peft's Whisper example: q and v of every attention
    "qv": ("self_attn.q_proj", "self_attn.v_proj", "encoder_attn.q_proj", "encoder_attn.v_proj"),
    # everything except cross-attention k/v, whose outputs over 1500 frames can then be cached
    "no-cross-kv": tuple(
        t for t in DECODER_LINEARS if t not in ("encoder_attn.k_proj", "encoder_attn.v_proj")
    ),
}


class AdapterConfigError(DamaError, ValueError):
    """A configuration that cannot work; the message names the field."""


@dataclass(frozen=True)
class AdapterConfig:
    """How to adapt a Whisper. The method's spec (`dama_asr.adapters.registry`) validates its options
    and stores the values actually used, so a saved config says what ran.

    method: one of `method_names()`.  r: rank of uniform-rank methods (lora, lora-fa, pissa, milora,
    dora; vera's shared random matrices, default 256; dama-no-schedule, where 0 means "the mean rank
    of the DAMA schedule", so the ablation spends the same budget); None where the method takes no
    single rank (dama, dama-no-svd and dama-no-bpp rank each layer by the schedule; full).  r_high/r_low/theta1/theta2: DAMA's
    schedule (adapters/schedule.py).  alpha_policy: "ratio" scales alpha = alpha_ratio * rank per layer (the
    same scaling at every rank); "fixed" uses alpha for every layer.  alpha: under "ratio" it is
    resolved to alpha_ratio * r for a uniform rank, and None where it differs per layer (dama) or the
    method has none (vera, full).  targets: short linear names or an alias (all, qv, no-cross-kv);
    empty: the method's default.  encoder: also adapt the encoder layers (uniform rank r_low for DAMA,
    r otherwise) at the targets' self-attention and feed-forward linears (`qv`: the encoder's q and v,
    peft's Whisper recipe); when False the encoder stays frozen and its outputs can be cached.
    encoder_from: with `encoder`, the first encoder layer adapted (1-based; 1 = all of them). The layers
    below stay frozen, and training caches their output instead of running them every step
    (`dama_asr.features.encoder_prefix`).
    encoder_schedule: how the encoder's ranks vary with depth, where the method offers a choice (its
    spec's `encoder_schedules`): 'uniform' (every method: r, or r_low for DAMA), and for DAMA 'rising'
    (r_low at the bottom to r_high at the top, where the encoder's language-specific information
    grows) or 'dama' (the decoder's depth-aware schedule, SVD basis and freezing, over the encoder's depth).
    """

    method: str = "dama"
    r: int | None = 0
    r_high: int = 32
    r_low: int = 8
    theta1: float = 0.3
    theta2: float = 0.7
    alpha_policy: str = "ratio"
    alpha_ratio: float = 2.0
    alpha: float | None = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ()
    encoder: bool = False
    encoder_from: int = 1
    encoder_schedule: str = "uniform"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            spec = get_method(self.method)
        except UnknownMethodError as err:
            raise AdapterConfigError(str(err)) from None
        if self.alpha_policy not in ("ratio", "fixed"):
            raise AdapterConfigError(f"alpha_policy: 'ratio' or 'fixed', got {self.alpha_policy!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise AdapterConfigError(f"dropout: must be in [0, 1), got {self.dropout}")
        if not isinstance(self.encoder_from, int) or self.encoder_from < 1:
            raise AdapterConfigError(f"encoder_from: a layer number >= 1, got {self.encoder_from!r}")
        if self.encoder_from > 1 and not self.encoder:
            raise AdapterConfigError("encoder_from: only with encoder adaptation (--encoder)")
        if self.encoder_schedule not in spec.encoder_schedules:
            raise AdapterConfigError(
                f"encoder_schedule: method {self.method} offers {', '.join(spec.encoder_schedules)}, "
                f"got {self.encoder_schedule!r}"
            )
        if self.encoder_schedule != "uniform" and not self.encoder:
            raise AdapterConfigError("encoder_schedule: only with encoder adaptation (--encoder)")
        object.__setattr__(self, "targets", tuple(self.targets) or spec.default_targets)
        self.target_linears()  # validates names
        for name, value in spec.resolve(self).items():
            object.__setattr__(self, name, value)

    @property
    def spec(self) -> MethodSpec:
        return get_method(self.method)

    def target_linears(self) -> tuple[str, ...]:
        """Decoder linear short names this config adapts, aliases expanded, in canonical order."""
        chosen: set[str] = set()
        for name in self.targets:
            if name in TARGET_ALIASES:
                chosen.update(TARGET_ALIASES[name])
            elif name in DECODER_LINEARS:
                chosen.add(name)
            else:
                valid = ", ".join((*TARGET_ALIASES, *DECODER_LINEARS))
                raise AdapterConfigError(f"targets: unknown target module {name!r}; valid: {valid}")
        return tuple(t for t in DECODER_LINEARS if t in chosen)

    @property
    def adapts_encoder(self) -> bool:
        return self.spec.adapts_encoder(self)

    @property
    def saves_full_model(self) -> bool:
        """The method saves every weight (full fine-tuning), not just adapter factors."""
        return self.spec.saves_full_model

    def alpha_for(self, rank: int) -> float:
        return self.alpha_ratio * rank if self.alpha_policy == "ratio" else self.alpha

    def to_dict(self) -> dict:
        out = asdict(self)
        out["targets"] = list(self.targets)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> AdapterConfig:
        if not isinstance(data, dict):
            raise AdapterConfigError(f"adapter options must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise AdapterConfigError(f"unknown adapter option(s): {', '.join(sorted(unknown))}")
        data = dict(data)
        try:
            if "targets" in data:
                targets = data["targets"]
                data["targets"] = tuple(targets.split(",") if isinstance(targets, str) else targets)
            return cls(**data)
        except TypeError as err:  # a value of the wrong type (r: "eight") from a hand-edited file
            raise AdapterConfigError(f"adapter options: a value has the wrong type ({err})") from None


def __getattr__(name: str):
    # METHODS stays importable for older callers; it is the registry's names, computed on first use
    # (the families import this module, so it cannot be a constant here).
    if name == "METHODS":
        return method_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
