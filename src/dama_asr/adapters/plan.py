"""The per-module plan of an adapter, computed from the model config alone (no weights).

Every LoRA-family method is a plan: which linears get a LoRA, with which rank and alpha, how A and
B start, and which of them train. `apply_adapter` executes a plan; `dama plan` prints it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from transformers import WhisperConfig

from dama_asr.adapters.config import ENCODER_LINEARS, AdapterConfig, AdapterConfigError
from dama_asr.adapters.schedule import Zone, dama_schedule, mean_rank

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
    alpha: float
    init: str
    train_a: bool
    train_b: bool
    dora: bool = False

    @property
    def trainable_parameters(self) -> int:
        n = self.rank * self.in_features * self.train_a + self.out_features * self.rank * self.train_b
        return n + self.out_features * self.dora  # DoRA's magnitude vector

    def to_dict(self) -> dict:
        return {**asdict(self), "trainable_parameters": self.trainable_parameters}


def linear_shape(config: WhisperConfig, side: str, linear: str) -> tuple[int, int]:
    """(in, out) features of a Whisper linear."""
    d = config.d_model
    ffn = config.decoder_ffn_dim if side == "decoder" else config.encoder_ffn_dim
    if linear == "fc1":
        return d, ffn
    if linear == "fc2":
        return ffn, d
    return d, d


def _decoder_rows(config: WhisperConfig, cfg: AdapterConfig) -> list[ModulePlan]:
    depth = config.decoder_layers
    schedule = dama_schedule(depth, cfg.r_high, cfg.r_low, cfg.theta1, cfg.theta2)
    is_dama = cfg.method.startswith("dama")
    uniform = cfg.r if cfg.r > 0 else mean_rank(schedule)
    rows = []
    for layer in schedule:
        zone = layer.zone.value if is_dama else "-"
        middle = is_dama and layer.zone is Zone.MIDDLE
        rank = layer.rank if cfg.method in ("dama", "dama-no-svd", "dama-no-bpp") else uniform
        init = {"pissa": INIT_PISSA, "milora": INIT_MILORA}.get(cfg.method, INIT_DEFAULT)
        if middle and cfg.method != "dama-no-svd":
            init = INIT_TRAILING
        train_a = not (cfg.method == "lora-fa" or (middle and cfg.method != "dama-no-bpp"))
        for linear in cfg.target_linears():
            fan_in, fan_out = linear_shape(config, "decoder", linear)
            rows.append(
                ModulePlan(
                    name=f"model.decoder.layers.{layer.layer - 1}.{linear}",
                    side="decoder",
                    layer=layer.layer,
                    linear=linear,
                    in_features=fan_in,
                    out_features=fan_out,
                    zone=zone,
                    rank=rank,
                    alpha=cfg.alpha_for(rank),
                    init=init,
                    train_a=train_a,
                    train_b=True,
                    dora=cfg.method == "dora",
                )
            )
    return rows


def _encoder_rows(config: WhisperConfig, cfg: AdapterConfig) -> list[ModulePlan]:
    rank = cfg.r_low if cfg.method.startswith("dama") else cfg.r
    init = {"pissa": INIT_PISSA, "milora": INIT_MILORA}.get(cfg.method, INIT_DEFAULT)
    # The encoder has no cross-attention: the targets' self-attention and feed-forward linears apply.
    chosen = cfg.target_linears()
    rows = []
    for i in range(config.encoder_layers):
        for linear in (t for t in ENCODER_LINEARS if t in chosen):
            fan_in, fan_out = linear_shape(config, "encoder", linear)
            rows.append(
                ModulePlan(
                    f"model.encoder.layers.{i}.{linear}",
                    "encoder",
                    i + 1,
                    linear,
                    fan_in,
                    fan_out,
                    "-",
                    rank,
                    cfg.alpha_for(rank),
                    init,
                    cfg.method != "lora-fa",
                    True,
                    cfg.method == "dora",
                )
            )
    return rows


def plan_modules(config: WhisperConfig, cfg: AdapterConfig) -> list[ModulePlan]:
    """Every adapted linear with its rank, init and trainable factors; empty for full fine-tuning."""
    if cfg.method == "full":
        return []
    rows = _decoder_rows(config, cfg) + (_encoder_rows(config, cfg) if cfg.encoder else [])
    for row in rows:
        limit = min(row.in_features, row.out_features)
        if row.rank > limit:
            raise AdapterConfigError(
                f"rank {row.rank} is larger than {row.name} allows ({row.out_features}x{row.in_features}: at most {limit})"
            )
    return rows


def full_trainable_parameters(config: WhisperConfig, encoder: bool) -> int:
    """Parameters full fine-tuning trains: the decoder (embeddings included), plus the encoder if asked."""
    from dama_asr.backbone.configs import meta_model

    model = meta_model(config)
    n = sum(p.numel() for p in model.model.decoder.parameters())
    if encoder:
        n += sum(p.numel() for p in model.model.encoder.parameters())
    return n


def trainable_parameters(config: WhisperConfig, cfg: AdapterConfig) -> int:
    if cfg.method == "full":
        return full_trainable_parameters(config, cfg.encoder)
    return sum(row.trainable_parameters for row in plan_modules(config, cfg))


def plan_table(config: WhisperConfig, cfg: AdapterConfig) -> str:
    """Markdown: one row per layer (decoder first), with rank, zone, init and trained factors."""
    if cfg.method == "full":
        return f"full fine-tuning: {trainable_parameters(config, cfg):,} trainable parameters"
    lines = [
        "| side | layer | zone | rank | alpha | init | trains | modules | trainable params |",
        "|---|---:|---|---:|---:|---|---|---:|---:|",
    ]
    rows = plan_modules(config, cfg)
    for side in ("decoder", "encoder"):
        for layer in sorted({r.layer for r in rows if r.side == side}):
            group = [r for r in rows if r.side == side and r.layer == layer]
            first = group[0]
            trains = "A,B" if first.train_a else "B only"
            trains += " +magnitude" if first.dora else ""
            params = sum(r.trainable_parameters for r in group)
            lines.append(
                f"| {side} | {layer} | {first.zone} | {first.rank} | {first.alpha:g} | {first.init} | {trains} | "
                f"{len(group)} | {params:,} |"
            )
    lines.append(f"\ntotal trainable parameters: {sum(r.trainable_parameters for r in rows):,}")
    return "\n".join(lines)
