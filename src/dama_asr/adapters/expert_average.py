"""Start one multilingual LoRA student from per-language LoRA experts: the best rank-r fit of their mean.

The "LoRA language experts" student (arXiv 2506.21555) starts from the experts' average. For expert e
on a linear W the update is delta_e = s_e B_e A_e (s_e = lora_alpha / r, per module through
`rank_pattern` / `alpha_pattern`), and we define the average as the mean update

    M = (1 / E) sum_e delta_e                     (an expert without that module contributes 0)

then give the student the rank-r truncated SVD of M, M ~ U_r S_r V_r^T, split evenly:

    B = U_r sqrt(S_r) / sqrt(s),   A = sqrt(S_r) V_r^T / sqrt(s),   so  s B A = U_r S_r V_r^T,

the best rank-r approximation of M in the Frobenius norm (Eckart-Young); exact when r >= rank(M),
e.g. 4 experts of rank 64 and a rank-256 student.

Why not average A and B separately (peft's `add_weighted_adapter(combination_type="linear")`)? Then
B_bar A_bar = (1/E^2) sum_{i,j} B_i A_j: the E^2 - E cross terms B_i A_j pair one expert's output basis
with another's input basis, which were learnt independently (each LoRA is only defined up to an
invertible r x r change of basis), so the product is neither any expert's update nor their mean, and
the diagonal terms come out scaled by 1/E^2 instead of 1/E.

Components beyond rank(M) (a student of higher rank than the mean needs) keep the student's own
random A rows with B = 0, as a fresh LoRA starts: they add nothing at init and still train (zero A and
B would be a saddle that no gradient leaves). Experts' factors are read directly from each member's
adapter_model.safetensors and computed in float32.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from peft.utils.other import get_pattern_key
from safetensors import safe_open

from dama_asr.adapters.sets import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    AdapterSet,
    AdapterSetError,
    base_fingerprint,
)

log = logging.getLogger(__name__)

# peft saves `<prefix><module>.lora_A.weight` with the adapter's name dropped from the key.
_FACTOR_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<factor>[AB])\.weight$")
_USE_ADAPTER = "or start the student from its own init (objective_options.init: adapter)"


class ExpertAverageError(AdapterSetError):
    """Experts (or a student) that the mean-update init cannot use; the message names which and the fix."""


@dataclass
class _Expert:
    """One member of the set: its config and, per module, the safetensors keys of A and B."""

    language: str
    folder: Path
    config: dict
    keys: dict[str, dict[str, str]] = field(default_factory=dict)  # module -> {"A": key, "B": key}

    def scale(self, module: str, rank: int) -> float:
        """peft's scaling of this module: lora_alpha / r (or / sqrt(r) with rsLoRA), patterns honoured."""
        alphas = self.config.get("alpha_pattern") or {}
        alpha = alphas.get(get_pattern_key(alphas.keys(), module), self.config.get("lora_alpha", 8))
        return float(alpha) / (math.sqrt(rank) if self.config.get("use_rslora") else rank)


def _read_expert(language: str, folder: Path) -> _Expert:
    """Parse a member's config and weight keys; refuse anything that is not a plain linear LoRA."""
    config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    kind = str(config.get("peft_type", "")).upper()
    if kind != "LORA":
        raise ExpertAverageError(
            f"{folder}: a {kind or 'untyped'} adapter, not a plain LoRA; the expert-mean init averages "
            f"LoRA updates only: rebuild the set from LoRA experts, {_USE_ADAPTER}"
        )
    if config.get("use_dora"):
        raise ExpertAverageError(
            f"{folder}: a DoRA expert (its magnitude vectors rescale W, so its update is not s B A); "
            f"rebuild the set from plain LoRA experts, {_USE_ADAPTER}"
        )
    expert = _Expert(language, folder, config)
    with safe_open(str(folder / ADAPTER_WEIGHTS), framework="pt") as f:
        for key in f.keys():
            match = _FACTOR_KEY.match(key)
            if match is None:
                what = "a DoRA magnitude vector" if "lora_magnitude_vector" in key else "not a LoRA factor"
                raise ExpertAverageError(
                    f"{folder}: holds {key} ({what}), which a plain LoRA student cannot take; {_USE_ADAPTER}"
                )
            if len(f.get_slice(key).get_shape()) != 2:
                raise ExpertAverageError(
                    f"{folder}: {key} is not a linear layer's factor; only linear LoRAs average, {_USE_ADAPTER}"
                )
            expert.keys.setdefault(match["module"], {})[match["factor"]] = key
    for module, pair in expert.keys.items():
        if set(pair) != {"A", "B"}:
            raise ExpertAverageError(
                f"{folder}: {module} has lora_{''.join(pair)} but not both factors; save the expert again"
            )
    return expert


def _student_layers(student: PeftModel, adapter_name: str) -> dict[str, LoraLayer]:
    """The student's LoRA layers by module name (as peft's saved keys name them); refuse non-LoRA."""
    if not isinstance(student, PeftModel) or adapter_name not in student.peft_config:
        held = ", ".join(student.peft_config) if isinstance(student, PeftModel) else "no peft adapter"
        raise ExpertAverageError(
            f"the student has no peft LoRA adapter {adapter_name!r} ({held}); train a LoRA student "
            f"(adapter method lora), {_USE_ADAPTER}"
        )
    config = student.peft_config[adapter_name]
    kind = str(getattr(config.peft_type, "value", config.peft_type)).upper()
    if kind != "LORA" or getattr(config, "use_dora", False):
        raise ExpertAverageError(
            f"the student's adapter {adapter_name!r} is not a plain LoRA (DoRA, VeRA, ...); train a LoRA "
            f"student (adapter method lora), {_USE_ADAPTER}"
        )
    layers = {}
    for name, module in student.base_model.model.named_modules():
        if isinstance(module, LoraLayer) and adapter_name in module.lora_A:
            a, b = module.lora_A[adapter_name].weight, module.lora_B[adapter_name].weight
            if a.ndim != 2:
                raise ExpertAverageError(
                    f"{name}: the student's LoRA there is not on a linear; {_USE_ADAPTER}"
                )
            if a.requires_grad != b.requires_grad:
                raise ExpertAverageError(
                    f"{name}: the student trains only one of its LoRA factors (lora-fa, dama's protected "
                    f"middle layers); setting both from the experts would undo that: use a plain lora "
                    f"student, {_USE_ADAPTER}"
                )
            layers[name] = module
    return layers


def _check_base(adapter_set: AdapterSet, student: PeftModel) -> None:
    found = base_fingerprint(student)
    if found != adapter_set.fingerprint:
        name = adapter_set.base_model or "(unnamed)"
        raise ExpertAverageError(
            f"{adapter_set.folder}: its experts were trained on base {name} (fingerprint "
            f"{adapter_set.fingerprint}), the student's base has fingerprint {found}; train the student on "
            f"{name}, or use experts trained on the student's base"
        )


def _mean_delta(experts: list[_Expert], handles: dict, module: str) -> tuple[torch.Tensor, int]:
    """(M (out, in) float32, number of experts holding `module`): the mean of s_e B_e A_e over all experts."""
    total, holders = None, 0
    for expert in experts:
        keys = expert.keys.get(module)
        if keys is None:
            continue
        f = handles[expert.language]
        a = f.get_tensor(keys["A"]).float()  # (r_e, in)
        b = f.get_tensor(keys["B"]).float()  # (out, r_e)
        delta = expert.scale(module, a.shape[0]) * (b @ a)  # (out, in)
        if total is not None and delta.shape != total.shape:
            raise ExpertAverageError(
                f"{expert.folder}: {module} is {tuple(delta.shape)}, other experts' are {tuple(total.shape)}"
            )
        total = delta if total is None else total + delta
        holders += 1
    assert total is not None  # callers ask only for modules some expert holds
    return total / len(experts), holders


def low_rank_factors(mean: torch.Tensor, rank: int, scale: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(B (out, k), A (k, in), k): scale * B @ A is the best rank-`rank` fit of `mean` (k <= rank: the
    numerically non-zero singular values only)."""
    u, s, vh = torch.linalg.svd(mean, full_matrices=False)  # (out, q), (q,), (q, in)
    tol = (s.max() if s.numel() else 0.0) * max(mean.shape) * torch.finfo(torch.float32).eps
    k = min(rank, int((s > tol).sum()))
    root = (s[:k] / scale).sqrt()  # (k,)
    return u[:, :k] * root, root[:, None] * vh[:k], k


def init_from_expert_mean(
    student: PeftModel, experts_folder: str | Path, adapter_name: str = "default"
) -> dict[str, dict]:
    """Set the student's LoRA `adapter_name` to the best rank-r fit of its experts' mean update.

    experts_folder: a saved `AdapterSet` of plain LoRA experts over the student's base model. Returns
    {module: {"rank": k used, "residual": ||M - s B A||_F / ||M||_F, "experts": how many hold it}};
    modules no expert holds are left at their init (a warning; rank and residual None). Raises
    `ExpertAverageError` for DoRA or non-LoRA experts, another base, or a student that is not a
    plain LoRA (or trains only one factor).
    """
    adapter_set = AdapterSet.load(experts_folder)
    layers = _student_layers(student, adapter_name)
    _check_base(adapter_set, student)
    folder = Path(experts_folder)
    experts = [
        _read_expert(code, folder / adapter_set.member(code)["folder"]) for code in adapter_set.languages
    ]
    held = {module for expert in experts for module in expert.keys}
    unused = sorted(held - set(layers))
    if unused:
        log.warning("%s: the student has no LoRA on %d module(s) the experts adapt (e.g. %s); their "
                    "updates are left out of its init", folder, len(unused), unused[0])  # fmt: skip
    report: dict[str, dict] = {}
    with contextlib.ExitStack() as stack:
        handles = {
            e.language: stack.enter_context(safe_open(str(e.folder / ADAPTER_WEIGHTS), framework="pt"))
            for e in experts
        }
        for name, layer in layers.items():
            if name not in held:
                report[name] = {"rank": None, "residual": None, "experts": 0}
                continue
            a_param, b_param = layer.lora_A[adapter_name].weight, layer.lora_B[adapter_name].weight
            mean, holders = _mean_delta(experts, handles, name)  # (out, in)
            if mean.shape != (b_param.shape[0], a_param.shape[1]):
                raise ExpertAverageError(
                    f"{folder}: {name} is {tuple(mean.shape)} in the experts but "
                    f"{(b_param.shape[0], a_param.shape[1])} in the student; use experts of the student's base"
                )
            scale = float(layer.scaling[adapter_name])
            if scale <= 0:
                raise ExpertAverageError(
                    f"{name}: the student's LoRA scale is {scale}; give it lora_alpha > 0"
                )
            b_top, a_top, k = low_rank_factors(mean, a_param.shape[0], scale)
            a_new = a_param.detach().float().cpu().clone()  # (r, in); rows k.. keep the student's init
            b_new = torch.zeros(b_param.shape, dtype=torch.float32)  # (out, r)
            a_new[:k], b_new[:, :k] = a_top, b_top
            norm = float(torch.linalg.matrix_norm(mean))
            gap = float(torch.linalg.matrix_norm(mean - scale * (b_top @ a_top)))
            with torch.no_grad():
                a_param.copy_(a_new)
                b_param.copy_(b_new)
            report[name] = {"rank": k, "residual": gap / norm if norm > 0 else 0.0, "experts": holders}
    missing = [name for name, row in report.items() if row["experts"] == 0]
    if missing:
        log.warning("%s: no expert adapts %d of the student's LoRA module(s) (e.g. %s); they keep their "
                    "own init", folder, len(missing), missing[0])  # fmt: skip
    return report


__all__ = ["ExpertAverageError", "init_from_expert_mean", "low_rank_factors"]
