"""The frozen base's cross-attention keys and values, computed once per utterance instead of every step.

With the encoder frozen, a decoder layer's cross-attention projects the same 1500 encoder frames of an
utterance to the same K and V in every step of every epoch: for Whisper-base 6 layers x 2 projections of
(1500 x 512) x (512 x 512), about 9.4 GFLOP per utterance.
When those projections are frozen (every adapter method; a LoRA on k_proj/v_proj only adds its low-rank
delta on top), the base outputs are kept here, in RAM, in the dtype the run computes in, and fed to the
model through `CrossKV.inject`, which swaps each frozen projection for a stand-in that returns the stored
tensor and puts the real one back afterwards. peft's LoRA layer still computes `base(x) + B A x`: only
`base(x)` comes from the cache.

Cost: 2 x layers x 1500 x D values per utterance (18 MB for base in bf16, 36 MB in float32). A budget in
GiB bounds it; utterances beyond it are recomputed per step, as before. Measured in benchmarks/speed/:
gathering a batch of 8 from RAM takes 13 ms against 128 ms to recompute in bf16 (614 ms in float32), yet
end to end (mode `dama-auto-kv`, 0.5 h, bf16, tcmalloc) the store did not make epochs faster and raised
peak RSS from 2.9 to 8.5 GiB. So it is off by default; it is for float32 runs or long trainings with RAM
to spare.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from dama_asr.backbone.unwrap import base_model_of
from dama_asr.memory import proc_kib

log = logging.getLogger(__name__)


def budget_bytes(gib: float, device: torch.device) -> int:
    """A budget in GiB -> bytes. Negative = automatic: a quarter of the RAM available right now on a CPU;
    nothing on a GPU, which recomputes the projections in a small fraction of a step."""
    if gib >= 0:
        return int(gib * 2**30)
    if device.type != "cpu":
        return 0
    return proc_kib("/proc/meminfo", "MemAvailable") * 1024 // 4


class _Stored(nn.Module):
    """Stands in for a frozen projection: returns the stored output for the batch, ignoring its input."""

    def __init__(self, real: nn.Module, output: torch.Tensor) -> None:
        super().__init__()
        self.base_layer = real  # peft's get_base_layer() walks `base_layer`: merges still see the weight
        self.output = output  # (B, frames, D)

    @property
    def weight(self) -> torch.Tensor:
        return self.base_layer.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[:-1] != self.output.shape[:-1]:
            raise RuntimeError(
                f"stored cross-attention output {tuple(self.output.shape)} does not fit input {tuple(x.shape)}"
            )
        return self.output


def _projection_slots(whisper: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """(owner, attribute, frozen linear) of every decoder layer's cross-attention k_proj then v_proj
    (`whisper` may be wrapped by peft).

    The owner is peft's LoRA layer when the projection is adapted (its `base_layer` is the frozen linear),
    else the attention module itself.
    """
    slots = []
    for layer in base_model_of(whisper).model.decoder.layers:
        for name in ("k_proj", "v_proj"):
            module = getattr(layer.encoder_attn, name)
            if hasattr(module, "base_layer"):
                slots.append((module, "base_layer", module.base_layer))
            else:
                slots.append((layer.encoder_attn, name, module))
    return slots


def can_cache(whisper: nn.Module) -> bool:
    """True when every cross-attention k/v base projection is frozen and plain (no DoRA, which reads them)."""
    for owner, _, linear in _projection_slots(whisper):
        if any(p.requires_grad for p in linear.parameters()):
            return False
        if getattr(owner, "use_dora", {}) and any(owner.use_dora.values()):
            return False
    return True


class CrossKV:
    """Per-utterance base K/V of every decoder layer, (2L, frames, D) each, up to a byte budget."""

    def __init__(self, whisper: nn.Module, budget: int, dtype: torch.dtype) -> None:
        self.whisper = whisper
        self.budget = budget
        self.dtype = dtype
        self._store: dict[str, torch.Tensor] = {}
        self.used = 0
        self.full = False

    def _project(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, frames, D) encoder outputs -> (2L, B, frames, D) base K/V, no gradient."""
        hidden = hidden.to(self.dtype)
        with (
            torch.no_grad(),
            torch.autocast(hidden.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32),
        ):
            return torch.stack(
                [linear(hidden).to(self.dtype) for _, _, linear in _projection_slots(self.whisper)]
            )

    def fill(self, keys: Sequence[str], hidden: torch.Tensor) -> int:
        """Store the base K/V of these utterances while the budget lasts; returns how many were stored."""
        todo = [i for i, k in enumerate(keys) if k not in self._store]
        if not todo or self.full:
            return 0
        kv = self._project(hidden[todo])  # (2L, n, frames, D)
        per = kv[:, 0].numel() * kv.element_size()
        stored = 0
        for j, i in enumerate(todo):
            if self.used + per > self.budget:
                self.full = True
                break
            self._store[keys[i]] = kv[:, j].clone()  # (2L, frames, D), its own storage
            self.used += per
            stored += 1
        return stored

    def __len__(self) -> int:
        return len(self._store)

    def batch(self, keys: Sequence[str], hidden: torch.Tensor) -> torch.Tensor:
        """(2L, B, frames, D) for a batch: stored rows gathered, the others projected now."""
        missing = [i for i, k in enumerate(keys) if k not in self._store]
        computed = (
            dict(zip(missing, self._project(hidden[missing]).unbind(1), strict=True)) if missing else {}
        )
        rows = [self._store[k] if k in self._store else computed[i] for i, k in enumerate(keys)]
        return torch.stack(rows, dim=1)

    @contextlib.contextmanager
    def inject(self, kv: torch.Tensor) -> Iterator[None]:
        """While active, each frozen cross-attention projection returns its slice of `kv` (2L, B, frames, D)."""
        slots = _projection_slots(self.whisper)
        if kv.shape[0] != len(slots):
            raise ValueError(f"expected {len(slots)} stored projections, got {kv.shape[0]}")
        for (owner, attribute, linear), output in zip(slots, kv, strict=True):
            setattr(owner, attribute, _Stored(linear, output))
        try:
            yield
        finally:
            for owner, attribute, linear in slots:
                setattr(owner, attribute, linear)
