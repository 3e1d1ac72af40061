"""VeRA (Kopiczko et al. 2024, "Vector-based Random Matrix Adaptation"), through peft's VeraConfig.

One pair of random matrices A (r, in) and B (out, r) is shared by every adapted linear and frozen;
each linear trains only two scaling vectors, lambda_d (r,) and lambda_b (out,):
    h = W x + lambda_b * (B (lambda_d * (A x)))
so a layer costs out + r parameters instead of LoRA's r (in + out). lambda_b starts at zero, so the
output is unchanged at init; lambda_d starts at 0.1 (the paper's Table 6c: small values train best).

Defaults, from the paper and our LoRA baseline:
- r = 256: the paper's rank for RoBERTa-base (d = 768); on Whisper-base (d = 512) the shared pair is
  then 256 x 512 and 512 x 256. The rank costs VeRA only r parameters per layer, so it can be high;
  r may exceed a layer's width (the product then has full rank), so no rank limit is checked.
- targets = "qv" (q and v of decoder self- and cross-attention, peft's Whisper recipe, LoRA's
  attention targets): VeRA's paper adapts the attention projections only.
- The shared matrices come from peft's fixed PRNG key 0 and are saved in the adapter
  (`save_projection=True`), so plain peft reloads exactly, whatever the machine's PRNG.
- VeRA has no alpha; the saved config's alpha is None. Its paper trains at a learning rate about ten
  times LoRA's (the vectors are few and start small); recipes should say so.

peft 0.21.2 lets the targeted linears differ in shape: the shared A and B are sized for the largest
input and output, and each layer slices its own (`VeraModel._find_dim`), so `targets: all` (fc1 and
fc2 are 512x2048 / 2048x512) works too. Older peft required one shape for all targeted layers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dama_asr.adapters.config import AdapterConfig, AdapterConfigError
from dama_asr.adapters.plan import LayerChoice, ModulePlan, rows_for
from dama_asr.adapters.registry import MethodSpec, register

if TYPE_CHECKING:
    from torch import nn
    from transformers import WhisperConfig, WhisperForConditionalGeneration

DEFAULT_RANK = 256
D_INITIAL = 0.1
PROJECTION_PRNG_KEY = 0
INIT_VERA = "shared random A,B (frozen); lambda_b=0, lambda_d=0.1"


class Vera(MethodSpec):
    name = "vera"
    family = "vera"
    label = "VeRA"
    colour = "#bcbd22"
    order = 35
    summary = (
        "VeRA: frozen random low-rank matrices shared by all layers, scaled by two trained vectors per layer."
    )
    default_targets = ("qv",)
    tune_axes = (
        "optim.lr=1e-3|3e-3|1e-2",
    )  # the shared matrices fix its size; scaling vectors want a higher lr

    def resolve(self, cfg: AdapterConfig) -> dict[str, Any]:
        r = cfg.r or DEFAULT_RANK  # 0 (unset) or None: the paper's rank
        if not isinstance(r, int) or r < 1:
            raise AdapterConfigError(f"r: method {self.name} needs r >= 1 (0 = {DEFAULT_RANK}), got {r!r}")
        return {"r": r, "alpha": None}

    def plan(self, config: WhisperConfig, cfg: AdapterConfig) -> list[ModulePlan]:
        def choose(layer: int, depth: int) -> LayerChoice:
            return LayerChoice(cfg.r, None, INIT_VERA, train_a=False, train_b=False, vectors=True)

        rows = rows_for(config, cfg, "decoder", choose)
        return rows + (rows_for(config, cfg, "encoder", choose) if cfg.encoder else [])

    def trained_names(self, row: ModulePlan) -> set[str]:
        return {"vera_lambda_b.default", "vera_lambda_d.default"}

    def apply(self, model: WhisperForConditionalGeneration, cfg: AdapterConfig) -> nn.Module:
        from peft import VeraConfig, get_peft_model

        from dama_asr.adapters.methods import ADAPTER_NAME
        from dama_asr.quiet import peft_quietly

        rows = self.plan(model.config, cfg)
        config = VeraConfig(
            r=cfg.r,
            target_modules=[row.name for row in rows],
            projection_prng_key=PROJECTION_PRNG_KEY,
            save_projection=True,
            vera_dropout=cfg.dropout,
            d_initial=D_INITIAL,
            bias="none",
        )
        # peft marks exactly the vera_lambda_* vectors trainable; A and B are buffers.
        with peft_quietly():
            return get_peft_model(model, config, adapter_name=ADAPTER_NAME)


register(Vera())
