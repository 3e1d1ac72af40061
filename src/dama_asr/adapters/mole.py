"""MoLE: per-language LoRA experts fused in the shallow encoder layers, routed by a learned language ID.

From "Efficient Multilingual ASR Finetuning via LoRA Language Experts" (arXiv 2506.21555). Given E frozen
LoRA experts (an `AdapterSet`, one per language) on a frozen Whisper:

- in encoder layers 1..l1 every adapted linear adds (sum_e w_le B_e)(sum_e w_le A_e) x: the experts'
  factors combined linearly, with one learned weight per layer and expert (`mix`, shape (l1, E)). A and
  B are combined separately, as the paper does, so the update has cross terms B_i A_j; the weights start
  at 1/sqrt(E), which makes the diagonal part sum_e B_e A_e / E the experts' mean update, and one
  expert at weight 1 is exactly that expert (tests/adapters/test_mole.py checks);
- a router (mean-pool over frames -> Linear -> GELU -> Linear) reads the hidden states after layer l1
  and predicts the language; every later layer (the deeper encoder layers and the whole decoder) adds
  only the routed expert's own B_e A_e x, per utterance, so a mixed-language batch is one forward.
  With l1 = the encoder's depth the router reads the encoder's output, at the decoder's entry (this is
  also where it reads a cached encoder's output when the experts leave the encoder frozen);
- language-aware use gives the language (`MoleState.given`): the router still runs (its logits are
  kept for its loss and its accuracy) but the given language routes. Language-agnostic use routes by
  the router's argmax.

Only `mix` and the router train. The experts' factors are held stacked, rank-padded with zeros and
with each expert's alpha/r folded into B, as non-persistent buffers: what is saved is the mixing
weights, the router and a copy of the experts' set (`save_mole` / `load_mole`), so a MoLE folder is
self-contained. Only plain LoRA experts qualify (DoRA and other tuners have no B A to combine).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from dama_asr.adapters.sets import ADAPTER_CONFIG, ADAPTER_WEIGHTS, AdapterSet
from dama_asr.errors import DamaError

_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<factor>[AB])(?:\.[^.]+)?\.weight$")
_LAYER = re.compile(r"^model\.(?P<side>encoder|decoder)\.layers\.(?P<layer>\d+)\.")


class MoleError(DamaError, ValueError):
    """Experts that cannot form a MoLE, or a MoLE folder that cannot be used; the message names it."""


@dataclass
class MoleState:
    """What one forward pass routes by; shared by every MoLE linear of one model."""

    languages: list[str]
    given: torch.Tensor | None = None  # (B,) expert index per utterance (language-aware), or None
    route: torch.Tensor | None = None  # (B,) the expert index each row uses in the routed layers
    router_logits: torch.Tensor | None = None  # (B, E) of the last forward
    extra: dict = field(default_factory=dict)

    def rows(self, n: int) -> torch.Tensor:
        """The route for n rows: beam search and sampling repeat each utterance's rows consecutively."""
        if self.route is None:
            raise MoleError("MoLE: the routed layers ran before the router (no route set)")
        b = self.route.shape[0]
        if n == b:
            return self.route
        if n % b:
            raise MoleError(f"MoLE: a batch of {n} rows cannot be routed by {b} routes")
        return self.route.repeat_interleave(n // b)


class ExpertFactors(nn.Module):
    """The E experts' factors of one linear: A (E, r, in), B (E, out, r), scale folded into B."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("a", a, persistent=False)
        self.register_buffer("b", b, persistent=False)


class MoleLinear(nn.Module):
    """A frozen linear plus its experts' updates: mixed by `weights` (a row of the model's `mix`), or
    routed per row by the shared `MoleState`."""

    def __init__(
        self, base: nn.Linear, factors: ExpertFactors, state: MoleState, mix: MoleMix | None, layer: int
    ):
        super().__init__()
        self.base_layer = base
        self.experts = factors
        self.state = state
        self._mix = [mix]  # a list: the mix belongs to the controller, not to each linear's parameters
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        a, b = self.experts.a, self.experts.b
        mix = self._mix[0]
        if mix is not None:  # merged layer: (sum_e w_e B_e)(sum_e w_e A_e) x
            w = mix.weights[self.layer].to(a.dtype)
            a_mix, b_mix = torch.einsum("e,eri->ri", w, a), torch.einsum("e,eor->or", w, b)
            return out + nn.functional.linear(nn.functional.linear(x, a_mix.to(x.dtype)), b_mix.to(x.dtype))
        rows = self.state.rows(x.shape[0])
        flat = x.reshape(x.shape[0], -1, x.shape[-1])  # (B, T, in)
        low = torch.bmm(flat, a[rows].transpose(1, 2).to(flat.dtype))  # (B, T, r)
        delta = torch.bmm(low, b[rows].transpose(1, 2).to(low.dtype))  # (B, T, out)
        return out + delta.reshape(*x.shape[:-1], delta.shape[-1]).to(out.dtype)


class MoleMix(nn.Module):
    """The learned combination weights of the merged layers: (l1, E)."""

    def __init__(self, l1: int, experts: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.full((l1, experts), 1.0 / math.sqrt(experts)))


class Router(nn.Module):
    """Language ID from hidden states (B, frames, D): mean over frames, then a two-layer MLP."""

    def __init__(self, width: int, languages: int, hidden: int = 256) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, languages))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm(hidden.float().mean(dim=1))).float()


class MoleController(nn.Module):
    """Attached to the Whisper as `model.mole`: the mix, the router, the state, and the hooks that route."""

    def __init__(self, languages: Sequence[str], l1: int, width: int, router_hidden: int) -> None:
        super().__init__()
        self.languages, self.l1, self.router_hidden = list(languages), l1, router_hidden
        self.mix = MoleMix(l1, len(self.languages))
        self.router = Router(width, len(self.languages), router_hidden)
        self.state = MoleState(self.languages)

    def index_of(self, codes: Sequence[str]) -> torch.Tensor:
        missing = sorted({c for c in codes if c not in self.languages})
        if missing:
            raise MoleError(
                f"MoLE: no expert for {', '.join(missing)}; its experts are {', '.join(self.languages)} "
                "(route language-agnostic, or train an expert for that language)"
            )
        return torch.tensor([self.languages.index(c) for c in codes], device=self.mix.weights.device)

    def set_route(self, hidden: torch.Tensor) -> None:
        logits = self.router(hidden)
        self.state.router_logits = logits
        given = self.state.given
        if given is not None and given.shape[0] != logits.shape[0]:
            if logits.shape[0] % given.shape[0]:
                raise MoleError(f"MoLE: {given.shape[0]} given languages for a batch of {logits.shape[0]}")
            given = given.repeat_interleave(logits.shape[0] // given.shape[0])  # beams of one utterance
        self.state.route = given if given is not None else logits.argmax(dim=-1)

    @contextmanager
    def languages_given(self, codes: Sequence[str] | None):
        """Route by these languages (one per utterance) inside the block; None: by the router."""
        previous = self.state.given
        self.state.given = None if codes is None else self.index_of(codes)
        try:
            yield
        finally:
            self.state.given = previous


def _expert_tensors(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    """{module: {"A": (r, in), "B": (out, r) * alpha/r}} of one plain-LoRA peft folder."""
    config = json.loads((folder / ADAPTER_CONFIG).read_text())
    if config.get("peft_type", "LORA") != "LORA" or config.get("use_dora"):
        raise MoleError(f"{folder}: not a plain LoRA ({config.get('peft_type')}, dora={config.get('use_dora')}); "
                        "MoLE combines LoRA factors only: train the experts with --method lora")  # fmt: skip
    r, alpha = config["r"], config.get("lora_alpha", config["r"])
    ranks, alphas = config.get("rank_pattern") or {}, config.get("alpha_pattern") or {}
    out: dict[str, dict[str, torch.Tensor]] = {}
    with safe_open(str(folder / ADAPTER_WEIGHTS), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
            m = _KEY.match(key)
            if m is None:
                raise MoleError(
                    f"{folder}: weight {key!r} is not a LoRA factor; MoLE combines plain LoRA only"
                )
            out.setdefault(m["module"], {})[m["factor"]] = f.get_tensor(key).float()
    for module, pair in out.items():
        rank = next((v for k, v in ranks.items() if module.endswith(k)), r)
        scale = next((v for k, v in alphas.items() if module.endswith(k)), alpha) / rank
        if config.get("use_rslora"):
            scale = next((v for k, v in alphas.items() if module.endswith(k)), alpha) / math.sqrt(rank)
        pair["B"] = pair["B"] * scale
    return out


def build_mole(
    whisper: nn.Module, experts: AdapterSet, l1: int, router_hidden: int = 256, check_base: bool = True
) -> MoleController:
    """Turn `whisper` (plain, its weights the set's base) into a MoLE over the set's experts, in place.

    Every parameter of the model is frozen except the mix and the router. Returns the controller,
    also reachable as `whisper.mole`.
    """
    from dama_asr.adapters.sets import base_fingerprint

    if experts.folder is None:
        raise MoleError("MoLE: the experts' set is not saved; save() it first")
    depth = whisper.config.encoder_layers
    if not 1 <= l1 <= depth:
        raise MoleError(f"MoLE: l1 must be 1..{depth} (encoder layers merged), got {l1}")
    if check_base and base_fingerprint(whisper) != experts.fingerprint:
        raise MoleError(
            f"{experts.folder}: the experts were trained on another base model (fingerprint "
            f"{experts.fingerprint}, this one {base_fingerprint(whisper)}); load {experts.base_model or 'their base'}"
        )
    languages = experts.languages
    per_expert = [_expert_tensors(experts.folder / experts.member(c)["folder"]) for c in languages]
    modules = sorted(set().union(*per_expert))
    whisper.requires_grad_(False)
    controller = MoleController(languages, l1, whisper.config.d_model, router_hidden)
    for name in modules:
        base = whisper.get_submodule(name)
        if not isinstance(base, nn.Linear):
            raise MoleError(f"{experts.folder}: the experts adapt {name}, which is not a linear layer")
        rank = max(p[name]["A"].shape[0] for p in per_expert if name in p)
        a = torch.zeros(len(languages), rank, base.in_features)
        b = torch.zeros(len(languages), base.out_features, rank)
        for e, pair in enumerate(per_expert):
            if name in pair:
                r = pair[name]["A"].shape[0]
                a[e, :r], b[e, :, :r] = pair[name]["A"], pair[name]["B"]
        where = _LAYER.match(name)
        merged = where is not None and where["side"] == "encoder" and int(where["layer"]) < l1
        mix = controller.mix if merged else None
        layer = int(where["layer"]) if merged else -1
        parent, _, child = name.rpartition(".")
        wrapped = MoleLinear(base, ExpertFactors(a.to(base.weight.device), b.to(base.weight.device)),
                             controller.state, mix, layer)  # fmt: skip
        setattr(whisper.get_submodule(parent), child, wrapped)
    whisper.mole = controller
    _install_router_hook(whisper, controller)
    controller.mix.weights.requires_grad_(True)
    controller.router.requires_grad_(True)
    return controller


def _install_router_hook(whisper: nn.Module, controller: MoleController) -> None:
    encoder = whisper.model.encoder
    if controller.l1 < whisper.config.encoder_layers:
        layer = encoder.layers[controller.l1 - 1]
        layer.register_forward_hook(lambda _m, _args, output: controller.set_route(output))
        return

    def at_decoder(_module, args, kwargs):
        hidden = kwargs.get("encoder_hidden_states")
        if hidden is None and len(args) > 2:
            hidden = args[2]
        if hidden is None:
            raise MoleError("MoLE: the decoder was called without encoder hidden states")
        # Generation calls the decoder once per token: route on the first call of each utterance batch.
        if controller.state.extra.get("routed_for") is not hidden:
            controller.set_route(hidden)
            controller.state.extra["routed_for"] = hidden
        return None

    whisper.model.decoder.register_forward_pre_hook(at_decoder, with_kwargs=True)


def mole_of(model: nn.Module) -> MoleController | None:
    """The MoLE controller of `model` (a Whisper, or anything wrapping one), or None."""
    for module in model.modules():
        if isinstance(module, MoleController):
            return module
    return None


__all__ = ["MoleController", "MoleError", "MoleLinear", "MoleState", "build_mole", "mole_of"]
