"""Which floating-point precision a run computes in, and the two mechanisms that apply it.

`auto` (the default everywhere) means bfloat16 autocast where the hardware computes bfloat16 natively
and float32 elsewhere:
- CUDA: when the GPU supports bf16 (Ampere and newer);
- x86 CPUs: when they have AMX-BF16 or AVX512-BF16 (a 4096^2 bf16 matmul ran 3.8x faster than fp32 on an
  AVX512-BF16 EPYC, 6.6x on an AMX Xeon; without those units PyTorch emulates bf16, slower than fp32).
`no`, `bf16` and `fp16` force a choice. fp16 has no fast path on a CPU and needs a gradient scaler, so it
falls back to float32 there.

Under bf16, trainable weights and optimizer state stay float32 (autocast casts them per op). Frozen
base weights are a different matter: autocast re-casts a weight that does not require grad on every
call, which for Whisper's decoder means ~50 M parameters per generated token. `hold_frozen_weights`
stores those weights in bfloat16 once, so autocast's cast becomes a no-op.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
from functools import cache
from pathlib import Path

import torch
from torch import nn

from dama_asr.errors import DamaError

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "no", "bf16", "fp16")
# Set to 1 to make the detection answer "no native bf16" (a CPU without it, as tests simulate).
NO_NATIVE_BF16_ENV = "DAMA_NO_NATIVE_BF16"
_CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionError(DamaError, ValueError):
    """An unknown precision name."""


@cache
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def cpu_bf16_units() -> tuple[str, ...]:
    """The CPU's native bf16 instruction sets (empty when it has none, or when detection is forced off)."""
    if os.environ.get(NO_NATIVE_BF16_ENV, "") not in ("", "0"):
        return ()
    return tuple(flag for flag in _CPU_BF16_FLAGS if flag in _cpu_flags())


def native_bf16(device: torch.device | str) -> bool:
    """True when `device` computes bfloat16 natively (not emulated)."""
    device = torch.device(device)
    if os.environ.get(NO_NATIVE_BF16_ENV, "") not in ("", "0"):
        return False
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(cpu_bf16_units())
    return False


def resolve_precision(requested: str, device: torch.device | str) -> str:
    """'auto' | 'no' | 'bf16' | 'fp16' -> what actually runs on `device`: 'no', 'bf16' or 'fp16'."""
    if requested not in PRECISIONS:
        raise PrecisionError(f"precision: one of {', '.join(PRECISIONS)}, got {requested!r}")
    device = torch.device(device)
    if requested == "auto":
        if native_bf16(device):
            return "bf16"
        log.warning(f"precision auto: {device.type} has no native bfloat16; computing in float32")
        return "no"
    if requested == "fp16" and device.type == "cpu":
        log.warning("precision fp16 has no fast path on a CPU; computing in float32 instead")
        return "no"
    if requested == "bf16" and not native_bf16(device):
        log.warning(
            f"precision bf16 forced on a {device.type} without native bfloat16: it will be emulated (slow)"
        )
    return requested


def compute_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a resolved precision; None for float32."""
    return _DTYPES.get(precision)


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """Autocast for a resolved precision ('no' gives a no-op context)."""
    dtype = compute_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


# Modules whose weights autocast casts for its matmuls; norms stay float32. Whisper's token embedding is
# tied to its output projection (proj_out, the largest matmul of decoding), so it is held with it.
_MATMUL_MODULES = (nn.Linear, nn.Conv1d)


def hold_frozen_weights(model: nn.Module, precision: str) -> int:
    """Store every frozen matmul weight (and its bias) of `model` in the compute dtype; returns how many.
    For models that then run under `autocast(precision)` only.

    Only modules all of whose parameters are frozen are touched, and never adapter factors (peft's
    `lora_*` modules), so what is saved as an adapter keeps its float32 values. Call it after the
    adapter is applied (SVD inits read the float32 base) and never on a model whose full weights are
    saved: the rounding would be saved with them.
    """
    dtype = compute_dtype(precision)
    if dtype is None:
        return 0
    count = 0
    for module in model.modules():
        # peft casts a LoRA's input to its (float32) factors' dtype, and autocast casts it straight back:
        # two copies of every (B, 1500, D) cross-attention input per adapted layer. Autocast alone suffices.
        if hasattr(module, "cast_input_dtype_enabled"):
            module.cast_input_dtype_enabled = False
    for name, module in model.named_modules():
        if not isinstance(module, _MATMUL_MODULES) or ".lora_" in f".{name}":
            continue
        params = list(module.parameters(recurse=False))
        if params and not any(p.requires_grad for p in params):
            for p in params:
                p.data = p.data.to(dtype)
            count += 1
    return count


def machine_description(precision: str) -> str:
    """'a 2-core AMD EPYC with AVX512-BF16 (precision bf16)': what the README's timing was measured on."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    units = "/".join(u.upper().replace("_", "-") for u in cpu_bf16_units()) or "no native bf16"
    return f"a {os.cpu_count()}-core {name} with {units} (precision {precision})"
