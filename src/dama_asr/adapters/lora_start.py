"""Start a plain LoRA from saved LoRAs: LoRA-Whisper's warm start and LoRA MoE (arXiv 2406.06619).

`AdapterConfig(method="lora", extra={"start": {...}})` makes the LoRA family start the adapter here,
right after peft has built its layers (`families/lora.py`). s = lora_alpha / r is a module's scale,
member m's factors are A_m (r_m, in), B_m (out, r_m) with scale s_m:

    {"mode": "copy", "members": [folder]}                                         (warm start)
        every LoRA layer starts as the member's update: A = A_m, B = (s_m / s) B_m, so s B A = s_m B_m A_m
        exactly; then A and B train as usual. The adapter needs the member's rank.
    {"mode": "mixture", "members": [f_1..f_k], "gates": [g_1..g_k], "learn_gates": bool,
     "frozen_rank": F}                                                                 (LoRA MoE)
        h = W x + sum_m g_m s_m B_m A_m x + s B_own A_own x
          = W x + s [g_1 (s_1/s) B_1 | ... | g_k (s_k/s) B_k | B_own] [A_1; ...; A_k; A_own] x:
        one plain LoRA of rank r = F + r_own, F = sum_m r_m. The members' rows and columns are frozen;
        A_own keeps peft's random rows and B_own its zeros, so at step 0 the model is the base plus the
        gated members. Fixed gates are folded into B at the start. Learned gates are one scalar per
        member and Whisper layer (shared by the layer's linears), starting at `gates`: the probe of this
        repository sees language information change with depth, so how much a related language helps
        may too, and k x layers scalars (24 k on whisper-base) cannot overfit the small data a new
        language brings; one scalar per linear would add nothing the own block cannot learn.

The mixture is built from torch parametrizations of the LoRA factors (`lora_A.default.weight` is
[frozen rows; own rows] computed from the own rows, which are the parameter that trains), so peft's
forward runs unchanged. `save_stacked` writes the effective factors as a plain peft LoRA of rank r:
what `PeftModel.from_pretrained` loads is the trained model, learned gates folded into B.
Members' factors are read from their adapter_model.safetensors (plain LoRA only: no DoRA, no other tuner).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft.tuners.lora import LoraLayer
from peft.utils.other import get_pattern_key
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils import parametrize

from dama_asr.adapters.config import AdapterConfig, AdapterConfigError
from dama_asr.adapters.methods import ADAPTER_NAME
from dama_asr.adapters.plan import ModulePlan

START = "start"  # the AdapterConfig.extra key
MODES = ("copy", "mixture")
_FIELDS = {"mode", "members", "gates", "learn_gates", "frozen_rank"}
# peft saves `<prefix><module>.lora_A.weight`, the adapter's name dropped from the key.
_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<factor>[AB])\.weight$")
_LAYER = re.compile(r"^model\.(?P<side>encoder|decoder)\.layers\.(?P<layer>\d+)\.")


class LoraStartError(AdapterConfigError):
    """Members a LoRA cannot start from (not plain LoRA, other modules or ranks); the message says which."""


@dataclass(frozen=True)
class LoraStart:
    """What `extra["start"]` asks for, validated (module doc)."""

    mode: str
    members: tuple[str, ...]
    gates: tuple[float, ...] = ()
    learn_gates: bool = False
    frozen_rank: int = 0

    @classmethod
    def of(cls, cfg: AdapterConfig) -> LoraStart | None:
        """The start of `cfg` (None: peft's own init); AdapterConfigError naming a bad field."""
        raw = cfg.extra.get(START)
        if raw is None:
            return None
        if not isinstance(raw, dict) or set(raw) - _FIELDS:
            unknown = sorted(set(raw) - _FIELDS) if isinstance(raw, dict) else [type(raw).__name__]
            raise AdapterConfigError(
                f"extra.start: a mapping of {', '.join(sorted(_FIELDS))}; got {unknown[0]!r}"
            )
        mode, members = raw.get("mode"), raw.get("members")
        if mode not in MODES:
            raise AdapterConfigError(f"extra.start.mode: one of {', '.join(MODES)}, got {mode!r}")
        if (
            not isinstance(members, (list, tuple))
            or not members
            or not all(isinstance(m, str) for m in members)
        ):
            raise AdapterConfigError(f"extra.start.members: a list of adapter folders, got {members!r}")
        gates = raw.get("gates") or []
        if mode == "copy":
            if len(members) != 1 or gates or raw.get("learn_gates") or raw.get("frozen_rank"):
                raise AdapterConfigError(
                    "extra.start: mode copy starts from exactly one member, without gates"
                )
            return cls(mode, (members[0],))
        if len(gates) != len(members) or not all(
            isinstance(g, (int, float)) and not isinstance(g, bool) and math.isfinite(g) for g in gates
        ):
            raise AdapterConfigError(f"extra.start.gates: one finite number per member, got {gates!r}")
        frozen = raw.get("frozen_rank")
        if not isinstance(frozen, int) or isinstance(frozen, bool) or not 1 <= frozen < (cfg.r or 0):
            raise AdapterConfigError(
                f"extra.start.frozen_rank: the members' total rank, at least 1 and below r = {cfg.r}, got {frozen!r}"
            )
        return cls(mode, tuple(members), tuple(float(g) for g in gates), bool(raw.get("learn_gates")), frozen)

    def to_extra(self) -> dict:
        """The `AdapterConfig.extra` that asks for this start (lists, so YAML and JSON keep it as is)."""
        if self.mode == "copy":
            return {START: {"mode": self.mode, "members": list(self.members)}}
        return {START: {"mode": self.mode, "members": list(self.members), "gates": list(self.gates),
                        "learn_gates": self.learn_gates, "frozen_rank": self.frozen_rank}}  # fmt: skip

    def trainable_parameters(self, rows: list[ModulePlan]) -> int:
        """What trains: every factor (copy); the own rows and, if learned, the gates (mixture)."""
        if self.mode == "copy":
            return sum(row.trainable_parameters for row in rows)
        own = sum((row.rank - self.frozen_rank) * (row.in_features + row.out_features) for row in rows)
        layers = {(row.side, row.layer) for row in rows}
        return own + (len(self.members) * len(layers) if self.learn_gates else 0)

    def apply(self, model: nn.Module, rows: list[ModulePlan]) -> None:
        """Start the peft LoRA `model` (adapter "default", built from `rows`) from the members."""
        members = [read_member(Path(folder)) for folder in self.members]
        gates: dict[tuple[str, int], nn.Parameter] = {}
        with contextlib.ExitStack() as stack, torch.no_grad():
            handles = [stack.enter_context(safe_open(str(m.weights), framework="pt")) for m in members]
            for row in rows:
                layer = model.base_model.model.get_submodule(row.name)
                scale = float(layer.scaling[ADAPTER_NAME])
                blocks = [m.factors(f, row.name) for m, f in zip(members, handles, strict=True)]
                if self.mode == "copy":
                    _copy(layer, blocks[0], scale, row)
                    continue
                gate = None
                if self.learn_gates:
                    gate = gates.setdefault((row.side, row.layer), nn.Parameter(torch.tensor(self.gates)))
                _stack(layer, blocks, scale, row, self, gate)


@dataclass
class Member:
    """One saved plain peft LoRA: its config and, per module, the safetensors keys of A and B."""

    folder: Path
    config: dict
    keys: dict[str, dict[str, str]] = field(default_factory=dict)  # module -> {"A": key, "B": key}
    ranks: dict[str, int] = field(default_factory=dict)  # module -> r

    @property
    def weights(self) -> Path:
        return self.folder / "adapter_model.safetensors"

    def scale(self, module: str) -> float:
        """peft's scale of `module`: lora_alpha / r (rsLoRA: / sqrt(r)), alpha_pattern honoured."""
        alphas = self.config.get("alpha_pattern") or {}
        alpha = alphas.get(get_pattern_key(alphas.keys(), module), self.config.get("lora_alpha", 8))
        rank = self.ranks[module]
        return float(alpha) / (math.sqrt(rank) if self.config.get("use_rslora") else rank)

    def factors(self, handle: Any, module: str) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(A (r, in), B (out, r) float32, scale) of `module`."""
        if module not in self.keys:
            raise LoraStartError(
                f"{self.folder}: no LoRA on {module}; start from members adapting the same modules "
                "(the same targets and encoder setting)"
            )
        pair = self.keys[module]
        return handle.get_tensor(pair["A"]).float(), handle.get_tensor(pair["B"]).float(), self.scale(module)


def read_member(folder: Path) -> Member:
    """Parse a saved adapter's config and weight keys; refuse anything but a plain linear LoRA."""
    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise LoraStartError(f"{folder}: no readable adapter_config.json ({err})") from None
    kind = str(config.get("peft_type", "")).upper()
    if kind != "LORA" or config.get("use_dora"):
        what = "a DoRA" if config.get("use_dora") else f"a {kind or 'untyped'}"
        raise LoraStartError(f"{folder}: {what} adapter; a LoRA can start only from plain LoRA members")
    member = Member(folder, config)
    try:
        with safe_open(str(member.weights), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                match = _KEY.match(key)
                shape = f.get_slice(key).get_shape()
                if match is None or len(shape) != 2:
                    raise LoraStartError(f"{folder}: holds {key}, not a linear LoRA factor")
                member.keys.setdefault(match["module"], {})[match["factor"]] = key
                if match["factor"] == "A":
                    member.ranks[match["module"]] = int(shape[0])
    except (SafetensorError, OSError) as err:
        raise LoraStartError(f"{member.weights}: not a readable safetensors file ({err})") from None
    broken = [m for m, pair in member.keys.items() if set(pair) != {"A", "B"}]
    if broken:
        raise LoraStartError(f"{folder}: {broken[0]} lacks one of its LoRA factors; save the adapter again")
    return member


def _copy(layer: nn.Module, block: tuple, scale: float, row: ModulePlan) -> None:
    a, b, member_scale = block
    lora_a, lora_b = layer.lora_A[ADAPTER_NAME].weight, layer.lora_B[ADAPTER_NAME].weight
    if a.shape != lora_a.shape or b.shape != lora_b.shape:
        raise LoraStartError(
            f"{row.name}: the member's factors are {tuple(a.shape)} and {tuple(b.shape)}, the adapter's "
            f"{tuple(lora_a.shape)} and {tuple(lora_b.shape)}; warm start needs the member's rank"
        )
    lora_a.copy_(a)
    lora_b.copy_(b * (member_scale / scale))


def _stack(layer: nn.Module, blocks: list, scale: float, row: ModulePlan, start: LoraStart, gate) -> None:
    frozen_a = torch.cat([a for a, _, _ in blocks], dim=0)  # (F, in)
    if frozen_a.shape[0] != start.frozen_rank:
        raise LoraStartError(
            f"{row.name}: the members' ranks add up to {frozen_a.shape[0]} here, not frozen_rank "
            f"{start.frozen_rank}; start from members of one uniform rank"
        )
    fixed = start.gates if gate is None else (1.0,) * len(blocks)  # learned gates multiply in forward
    frozen_b = torch.cat([b * (s / scale) * g for (_, b, s), g in zip(blocks, fixed, strict=True)], dim=1)
    sizes = [a.shape[0] for a, _, _ in blocks]
    lora_a, lora_b = layer.lora_A[ADAPTER_NAME], layer.lora_B[ADAPTER_NAME]
    if frozen_a.shape[1] != lora_a.weight.shape[1] or frozen_b.shape[0] != lora_b.weight.shape[0]:
        raise LoraStartError(f"{row.name}: the members' factors do not fit this base's {row.linear}")
    dtype = lora_a.weight.dtype
    parametrize.register_parametrization(lora_a, "weight", Stacked(frozen_a.to(dtype), dim=0))
    parametrize.register_parametrization(lora_b, "weight", Stacked(frozen_b.to(dtype), 1, gate, sizes))
    for linear in (lora_a, lora_b):
        linear.parametrizations.weight.original.requires_grad_(True)


class Stacked(nn.Module):
    """A torch parametrization of one LoRA factor: weight = [frozen | own] along `dim`; `own` trains.

    gates (k,) and sizes (k ranks): the frozen columns of member m are scaled by gates[m] (B only).
    """

    def __init__(self, frozen: torch.Tensor, dim: int, gates: nn.Parameter | None = None, sizes=()) -> None:
        super().__init__()
        self.register_buffer("frozen", frozen, persistent=False)  # read from the members, not saved
        self.dim = dim
        self.gates = gates
        self.register_buffer("sizes", torch.tensor(list(sizes), dtype=torch.long), persistent=False)

    def forward(self, own: torch.Tensor) -> torch.Tensor:
        frozen = self.frozen
        if self.gates is not None:
            frozen = frozen * torch.repeat_interleave(self.gates, self.sizes).to(frozen.dtype)  # (out, F)
        return torch.cat([frozen.to(own.dtype), own], dim=self.dim)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        first = self.frozen.shape[self.dim]
        return weight.narrow(self.dim, first, weight.shape[self.dim] - first).clone()


def save_stacked(model: nn.Module, folder: Path) -> bool:
    """Write a mixture-started LoRA as the plain peft LoRA it equals (False: `model` is not one)."""
    layers = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, LoraLayer) and ADAPTER_NAME in module.lora_A
    }
    if not any(parametrize.is_parametrized(m.lora_A[ADAPTER_NAME], "weight") for m in layers.values()):
        return False
    state = {}
    with torch.no_grad():
        for name, module in layers.items():
            for factor in ("A", "B"):
                weight = getattr(module, f"lora_{factor}")[ADAPTER_NAME].weight  # the effective factor
                state[f"{name}.lora_{factor}.weight"] = weight.detach().float().cpu().contiguous()
    config = copy.deepcopy(model.peft_config[ADAPTER_NAME])
    config.inference_mode = True  # as peft's own save_pretrained writes it
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(folder))
    save_file(state, str(folder / "adapter_model.safetensors"))
    return True


__all__ = ["START", "LoraStart", "LoraStartError", "Member", "Stacked", "read_member", "save_stacked"]
