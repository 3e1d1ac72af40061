"""DAMA (adapters/schedule.py: the rank schedule) and its three ablations, each switching off one of its ideas.

DAMA ranks decoder layers by depth (r_high at the ends, r_low in the middle, `schedule.py`) and
starts the middle layers' A from W's trailing right singular vectors, frozen ("basis-preserving
projection": only B trains there). The encoder, when adapted, gets plain LoRA at r_low, or with
`encoder_schedule` ranks rising with depth or the decoder's schedule over the encoder's layers.
    dama-no-schedule: one uniform rank (r, or 0 = the schedule's mean, the same budget)
    dama-no-svd:      the middle layers' frozen A is random (kaiming), not the trailing basis
    dama-no-bpp:      the middle layers' trailing-basis A trains too
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dama_asr.adapters.config import AdapterConfig, AdapterConfigError
from dama_asr.adapters.families.lora import LoraFamily, ratio_alpha
from dama_asr.adapters.plan import INIT_DEFAULT, INIT_TRAILING, LayerChoice, ModulePlan
from dama_asr.adapters.registry import register
from dama_asr.adapters.schedule import Zone, dama_rank, dama_schedule, mean_rank

if TYPE_CHECKING:
    from torch import nn


class Dama(LoraFamily):
    name = "dama"
    family = "dama"
    label = "DAMA"
    colour = "#d62728"
    order = 40
    summary = (
        "DAMA: depth-aware ranks (high at the ends, low in the middle) with a frozen trailing-SVD basis "
        "in the middle layers."
    )
    requires_rank = False
    # The rank pair moves together, keeping the recipe's 4:1 ends-to-middle ratio.
    tune_axes = ("optim.lr=3e-4|1e-3|3e-3", "adapter.r_high,adapter.r_low=16,4|32,8|64,16")
    encoder_schedules = ("uniform", "rising", "dama")
    schedule = True  # ranks follow the depth schedule (else one uniform rank)
    svd = True  # middle layers' A starts from the trailing singular vectors (else kaiming)
    bpp = True  # middle layers' A is frozen (else it trains)

    def resolve(self, cfg: AdapterConfig) -> dict[str, Any]:
        if not 0.0 <= cfg.theta1 < cfg.theta2 <= 1.0:
            raise AdapterConfigError(
                f"theta1/theta2: need 0 <= theta1 < theta2 <= 1, got {cfg.theta1} and {cfg.theta2}"
            )
        if cfg.r_low < 1 or cfg.r_high < cfg.r_low:
            raise AdapterConfigError(f"r_high/r_low: need 1 <= r_low <= r_high, got {cfg.r_high}/{cfg.r_low}")
        if self.schedule:
            # Ranks come from the schedule: no single r, and under "ratio" no single alpha.
            return {"r": None, "alpha": ratio_alpha(cfg, None)}
        r = cfg.r or 0  # 0: the schedule's mean rank, known once the depth is
        if not isinstance(r, int) or r < 0:
            raise AdapterConfigError(
                f"r: method {self.name} needs r >= 0 (0 = the schedule's mean), got {r!r}"
            )
        return {"r": r, "alpha": ratio_alpha(cfg, r or None)}

    def decoder_layer(self, cfg: AdapterConfig, layer: int, depth: int) -> LayerChoice:
        at = dama_rank(layer, depth, cfg.r_high, cfg.r_low, cfg.theta1, cfg.theta2)
        middle = at.zone is Zone.MIDDLE
        if self.schedule:
            rank = at.rank
        else:
            rank = cfg.r or mean_rank(dama_schedule(depth, cfg.r_high, cfg.r_low, cfg.theta1, cfg.theta2))
        init = INIT_TRAILING if middle and self.svd else INIT_DEFAULT
        return LayerChoice(rank, cfg.alpha_for(rank), init, not (middle and self.bpp), zone=at.zone.value)

    def encoder_layer(self, cfg: AdapterConfig, layer: int, depth: int) -> LayerChoice:
        if (
            cfg.encoder_schedule == "dama"
        ):  # the decoder's schedule (and its ablation) over the encoder's depth
            return self.decoder_layer(cfg, layer, depth)
        if cfg.encoder_schedule == "rising":
            rank = int(cfg.r_low + (cfg.r_high - cfg.r_low) * (layer - 1) / max(depth - 1, 1) + 0.5)
            return LayerChoice(rank, cfg.alpha_for(rank), INIT_DEFAULT, zone="rising")
        return LayerChoice(cfg.r_low, cfg.alpha_for(cfg.r_low), INIT_DEFAULT)

    def initialise(self, layer: nn.Module, row: ModulePlan) -> None:
        if row.init == INIT_TRAILING:
            from dama_asr.adapters.methods import lora_factors
            from dama_asr.adapters.svd import trailing_basis

            lora_a, lora_b, base = lora_factors(layer)
            lora_a.copy_(trailing_basis(base, row.rank))
            lora_b.zero_()
        return None


class DamaNoSchedule(Dama):
    name = "dama-no-schedule"
    label = "DAMA without schedule"
    colour = "#ff9896"
    order = 41
    summary = "DAMA ablation: one uniform rank (the schedule's mean by default), SVD basis and freezing kept."
    schedule = False


class DamaNoSvd(Dama):
    name = "dama-no-svd"
    label = "DAMA without SVD basis"
    colour = "#ffbb78"
    order = 42
    summary = "DAMA ablation: the middle layers' frozen A is random, not the trailing singular vectors."
    svd = False


class DamaNoBpp(Dama):
    name = "dama-no-bpp"
    label = "DAMA without frozen basis"
    colour = "#c49c94"
    order = 43
    summary = "DAMA ablation: the middle layers' trailing-SVD A trains too."
    bpp = False


for _spec in (Dama(), DamaNoSchedule(), DamaNoSvd(), DamaNoBpp()):
    register(_spec)
