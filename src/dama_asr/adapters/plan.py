"""The per-module plan of an adapter, computed from the model config alone (no weights).

An adapter is a plan: which linears it wraps, with which rank and alpha, how its factors start, and
which parts train. Each method's spec builds its plan (`MethodSpec.plan`, with `rows_for` here for the
layer-by-layer part); `apply_adapter` executes it; `dama plan` prints it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from dama_asr.adapters.config import ENCODER_LINEARS, AdapterConfig, AdapterConfigError
from dama_asr.adapters.registry import get_method

if TYPE_CHECKING:
    from torch import nn
    from transformers import WhisperConfig

# How A and B start (B is zero unless the init says otherwise).
INIT_DEFAULT = "kaiming-A, zero-B"
INIT_TRAILING = "trailing-SVD-A, zero-B"
INIT_PISSA = "principal-SVD (residual W)"
INIT_MILORA = "minor-SVD (residual W)"


@dataclass(frozen=True)
class ModulePlan:
    name: str  # module path in WhisperForConditionalGeneration, e.g. model.decoder.layers.0.fc1
    side: str  # decoder | encoder
    layer: int  # 1-based
    linear: str  # short name, e.g. encoder_attn.k_proj
    in_features: int
    out_features: int
    zone: str
    rank: int
    alpha: float | None  # None: the method has no alpha (VeRA)
    init: str
    train_a: bool
    train_b: bool
    dora: bool = False
    # Trains two scaling vectors, (out,) and (rank,), around frozen shared factors (VeRA).
    vectors: bool = False

    @property
    def trainable_parameters(self) -> int:
        n = self.rank * self.in_features * self.train_a + self.out_features * self.rank * self.train_b
        n += self.out_features * self.dora  # DoRA's magnitude vector
        return n + (self.out_features + self.rank) * self.vectors

    @property
    def trains(self) -> str:
        """What trains, for tables: "A,B", "B only", "scaling vectors", "+magnitude"."""
        factors = {(True, True): "A,B", (False, True): "B only", (True, False): "A only"}
        parts = [factors.get((self.train_a, self.train_b), "")]
        parts += ["scaling vectors"] * self.vectors + ["+magnitude"] * self.dora
        return " ".join(p for p in parts if p)

    def to_dict(self) -> dict:
        return {**asdict(self), "trainable_parameters": self.trainable_parameters}


@dataclass(frozen=True)
class LayerChoice:
    """What a method decides per layer; `rows_for` repeats it over the layer's targeted linears."""

    rank: int
    alpha: float | None
    init: str
    train_a: bool = True
    train_b: bool = True
    zone: str = "-"
    dora: bool = False
    vectors: bool = False


def linear_shape(config: WhisperConfig, side: str, linear: str) -> tuple[int, int]:
    """(in, out) features of a Whisper linear."""
    d = config.d_model
    ffn = config.decoder_ffn_dim if side == "decoder" else config.encoder_ffn_dim
    if linear == "fc1":
        return d, ffn
    if linear == "fc2":
        return ffn, d
    return d, d


def rows_for(
    config: WhisperConfig, cfg: AdapterConfig, side: str, choose: Callable[[int, int], LayerChoice]
) -> list[ModulePlan]:
    """One row per targeted linear of every layer of `side`; choose(layer, depth) -> LayerChoice, 1-based.

    The encoder has no cross-attention: there the targets' self-attention and feed-forward linears apply,
    from layer `cfg.encoder_from` up.
    """
    chosen = cfg.target_linears()
    if side == "decoder":
        depth, linears = config.decoder_layers, chosen
    else:
        depth, linears = config.encoder_layers, tuple(t for t in ENCODER_LINEARS if t in chosen)
    first = 1 if side == "decoder" else first_encoder_layer(config, cfg)
    rows = []
    for layer in range(first, depth + 1):
        c = choose(layer, depth)
        for linear in linears:
            fan_in, fan_out = linear_shape(config, side, linear)
            rows.append(
                ModulePlan(
                    name=f"model.{side}.layers.{layer - 1}.{linear}",
                    side=side,
                    layer=layer,
                    linear=linear,
                    in_features=fan_in,
                    out_features=fan_out,
                    zone=c.zone,
                    rank=c.rank,
                    alpha=c.alpha,
                    init=c.init,
                    train_a=c.train_a,
                    train_b=c.train_b,
                    dora=c.dora,
                    vectors=c.vectors,
                )
            )
    return rows


def first_encoder_layer(config: WhisperConfig, cfg: AdapterConfig) -> int:
    """The first adapted encoder layer (1-based), refused when the encoder has no such layer."""
    if cfg.encoder_from > config.encoder_layers:
        raise AdapterConfigError(
            f"encoder_from: {cfg.encoder_from}, but the encoder has {config.encoder_layers} layers"
        )
    return cfg.encoder_from


def check_ranks(rows: list[ModulePlan]) -> list[ModulePlan]:
    """A low-rank factor pair cannot be wider than its layer: refuse, naming the first such module."""
    for row in rows:
        limit = min(row.in_features, row.out_features)
        if row.rank > limit:
            raise AdapterConfigError(
                f"rank {row.rank} is larger than {row.name} allows ({row.out_features}x{row.in_features}: at most {limit})"
            )
    return rows


def plan_modules(config: WhisperConfig, cfg: AdapterConfig) -> list[ModulePlan]:
    """Every adapted linear with its rank, init and trainable parts; empty for full fine-tuning."""
    return get_method(cfg.method).plan(config, cfg)


def full_trainable_parameters(config: WhisperConfig, cfg: AdapterConfig) -> int:
    """Parameters full fine-tuning trains: the decoder (embeddings included), plus the encoder if asked
    (from layer `encoder_from` up, with the final layer norm)."""
    from dama_asr.backbone.configs import meta_model

    model = meta_model(config)
    n = sum(p.numel() for p in model.model.decoder.parameters())
    if cfg.encoder:
        n += sum(p.numel() for p in trainable_encoder_part(model.model.encoder, cfg).parameters())
    return n


def trainable_encoder_part(encoder: nn.Module, cfg: AdapterConfig) -> nn.Module:
    """What full fine-tuning trains of the encoder: all of it, or layers encoder_from.. and the norm."""
    from torch import nn

    if cfg.encoder_from <= 1:
        return encoder
    first = first_encoder_layer(encoder.config, cfg)
    return nn.ModuleList([*list(encoder.layers)[first - 1 :], encoder.layer_norm])


def trainable_parameters(config: WhisperConfig, cfg: AdapterConfig) -> int:
    return get_method(cfg.method).trainable_parameters(config, cfg)


def resolved_plan(config: WhisperConfig, cfg: AdapterConfig) -> dict:
    """The ranks and alphas a config resolves to on this model, one entry per layer (for dama_adapter.json):
    what the config alone cannot say (DAMA's schedule, dama-no-schedule's mean rank)."""
    layers, seen = [], set()
    for row in plan_modules(config, cfg):
        if (row.side, row.layer) not in seen:
            seen.add((row.side, row.layer))
            layers.append({"side": row.side, "layer": row.layer, "rank": row.rank, "alpha": row.alpha})
    return {"trainable_parameters": trainable_parameters(config, cfg), "layers": layers}


# The schedule's zones as the table shows them: the arrow says which way the rank moves with depth,
# so a layer at the start of the late ramp can be "late" and still low-rank (it is where the rise begins).
ZONE_LABELS = {"early": "early ↓", "middle": "middle", "late": "late ↑"}
PLAN_LEGEND = (
    "Layers count 1..L from the input, as in `dama probe` (whose layer 0 is the embeddings); peft module "
    "names count from 0 (layer 1 = `layers.0`). Zones: early ↓ = the rank falls from r_high to r_low over "
    "layers 1..l_early; middle = r_low with a frozen trailing-singular basis (BPP); late ↑ = the rank "
    "rises from r_low back to r_high over l_late..L, so the first late layer is still low-rank."
)


def plan_table(config: WhisperConfig, cfg: AdapterConfig) -> str:
    """Markdown: one row per layer (decoder first), with rank, zone, init and trained parts."""
    rows = plan_modules(config, cfg)
    if not rows:
        return f"{get_method(cfg.method).label}: {trainable_parameters(config, cfg):,} trainable parameters"
    lines = [
        "| side | layer | zone | rank | alpha | init | trains | modules | trainable params |",
        "|---|---:|---|---:|---:|---|---|---:|---:|",
    ]
    if any(r.zone in ZONE_LABELS for r in rows):
        lines.insert(0, PLAN_LEGEND + "\n")
    for side in ("decoder", "encoder"):
        for layer in sorted({r.layer for r in rows if r.side == side}):
            group = [r for r in rows if r.side == side and r.layer == layer]
            first = group[0]
            alpha = "-" if first.alpha is None else f"{first.alpha:g}"
            params = sum(r.trainable_parameters for r in group)
            lines.append(
                f"| {side} | {layer} | {ZONE_LABELS.get(first.zone, first.zone)} | {first.rank} | {alpha} | {first.init} | {first.trains} | "
                f"{len(group)} | {params:,} |"
            )
    lines.append(f"\ntotal trainable parameters: {sum(r.trainable_parameters for r in rows):,}")
    return "\n".join(lines)
