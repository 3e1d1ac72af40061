"""`mole`: LoRA language experts fused in the shallow encoder layers with a learned language-ID router.

The module itself is `dama_asr.adapters.mole`; this spec is how configs, training and saved folders
reach it. Its options live in `AdapterConfig.extra`, filled by `mole_options` from the experts' set:

    experts: the adapter set's folder     l1: encoder layers merged (the router reads layer l1's output)
    router_hidden: the router MLP's width  languages: the experts' languages, in routing order
    expert_encoder: whether the experts adapt the encoder   encoder_layers: the encoder's depth

Saved folder (what `save_adapter` writes around `save`):
    mole.json           {"format": "dama-mole", "version": 1, "l1", "router_hidden", "languages"}
    mole.safetensors    the mix (l1, E) and the router's weights: all that trained
    experts/            a copy of the experts' adapter set, so the folder is self-contained
    dama_adapter.json, README.md, checksums.json   as for every adapter
A MoLE routes each utterance to its own expert, so it cannot be merged into one plain Whisper:
export its experts instead (one model per language).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dama_asr.adapters.config import AdapterConfig, AdapterConfigError
from dama_asr.adapters.registry import MethodSpec, register

if TYPE_CHECKING:
    from torch import nn
    from transformers import WhisperConfig, WhisperForConditionalGeneration

MOLE_INDEX = "mole.json"
MOLE_WEIGHTS = "mole.safetensors"
MOLE_FORMAT = "dama-mole"
EXPERTS_DIR = "experts"
_OPTIONS = ("experts", "l1", "router_hidden", "languages", "expert_encoder", "encoder_layers")
DEFAULT_ROUTER_HIDDEN = 256


def mole_options(
    experts: str | Path,
    encoder_layers: int,
    l1: int | None = None,
    router_hidden: int = DEFAULT_ROUTER_HIDDEN,
) -> dict:
    """`AdapterConfig.extra` for a MoLE over the saved set `experts` on a base whose encoder has
    `encoder_layers` layers. l1 defaults to half the encoder when the experts adapt it (the paper merges
    8-20 of 24), else to all of it (nothing to merge: the router reads the frozen encoder's output,
    which can then be cached)."""
    from dama_asr.adapters.sets import AdapterSet

    folder = Path(experts)
    expert_set = AdapterSet.load(folder)
    depth = int(encoder_layers)
    adapts_encoder = _experts_adapt_encoder(folder, expert_set)
    if l1 is None:
        l1 = max(1, depth // 2) if adapts_encoder else depth
    return {"experts": str(folder.resolve()), "l1": int(l1), "router_hidden": int(router_hidden),
            "languages": expert_set.languages, "expert_encoder": adapts_encoder, "encoder_layers": depth}  # fmt: skip


def _experts_adapt_encoder(folder: Path, expert_set) -> bool:
    from safetensors import safe_open

    for code in expert_set.languages:
        with safe_open(
            str(folder / expert_set.member(code)["folder"] / "adapter_model.safetensors"), "pt"
        ) as f:
            if any(".encoder.layers." in k for k in f.keys()):  # noqa: SIM118
                return True
    return False


class Mole(MethodSpec):
    name = "mole"
    family = "mole"
    label = "MoLE"
    colour = "#7f7f7f"
    order = 80
    summary = "MoLE: per-language LoRA experts merged in the first l1 encoder layers, a learned LID router for the rest."
    default_targets = ("all",)
    builds_on_experts = True
    default_objective = "router"
    default_sampler = "language-balanced"

    def experts_options(self, experts: Path, encoder_layers: int, **flags: Any) -> dict[str, Any]:
        return mole_options(
            experts, encoder_layers, flags.get("l1"), flags.get("router_hidden") or DEFAULT_ROUTER_HIDDEN
        )

    def resolve(self, cfg: AdapterConfig) -> dict[str, Any]:
        missing = [k for k in _OPTIONS if k not in cfg.extra]
        if missing:
            raise AdapterConfigError(
                f"mole: missing {', '.join(missing)}; build the options with --experts DIR (mole_options)"
            )
        if not 1 <= int(cfg.extra["l1"]) <= int(cfg.extra["encoder_layers"]):
            raise AdapterConfigError(
                f"mole: l1 must be 1..{cfg.extra['encoder_layers']}, got {cfg.extra['l1']}"
            )
        return {"r": None, "alpha": None, "encoder": bool(self.adapts_encoder(cfg))}

    def adapts_encoder(self, cfg: AdapterConfig) -> bool:
        # The encoder changes when the experts adapt it, or when the router must read a middle layer.
        extra = cfg.extra
        return bool(extra.get("expert_encoder")) or int(extra.get("l1", 0)) < int(
            extra.get("encoder_layers", 0)
        )

    def trainable_parameters(self, config: WhisperConfig, cfg: AdapterConfig) -> int:
        experts, hidden, width = len(cfg.extra["languages"]), int(cfg.extra["router_hidden"]), config.d_model
        router = 2 * width + width * hidden + hidden + hidden * experts + experts
        return int(cfg.extra["l1"]) * experts + router

    def apply(self, model: WhisperForConditionalGeneration, cfg: AdapterConfig) -> nn.Module:
        from dama_asr.adapters.mole import build_mole
        from dama_asr.adapters.sets import AdapterSet

        experts = AdapterSet.load(cfg.extra["experts"])
        if experts.languages != list(cfg.extra["languages"]):
            raise AdapterConfigError(
                f"mole: {cfg.extra['experts']} now holds {', '.join(experts.languages)}, not the configured "
                f"{', '.join(cfg.extra['languages'])}; rebuild the options from the set"
            )
        build_mole(model, experts, int(cfg.extra["l1"]), int(cfg.extra["router_hidden"]))
        return model

    def save(self, model: nn.Module, cfg: AdapterConfig, folder: Path) -> None:
        from safetensors.torch import save_file

        from dama_asr.adapters.mole import mole_of
        from dama_asr.adapters.sets import AdapterSet
        from dama_asr.atomic import atomic_write_text

        controller = mole_of(model)
        weights = {k: v.detach().float().cpu().contiguous() for k, v in controller.state_dict().items()}
        save_file(weights, str(folder / MOLE_WEIGHTS))
        index = {"format": MOLE_FORMAT, "version": 1, "l1": controller.l1,
                 "router_hidden": controller.router_hidden, "languages": controller.languages}  # fmt: skip
        atomic_write_text(folder / MOLE_INDEX, json.dumps(index, indent=2) + "\n")
        AdapterSet.load(cfg.extra["experts"]).save(folder / EXPERTS_DIR)

    def load(self, base: WhisperForConditionalGeneration, folder: Path) -> nn.Module:
        return load_mole(base, folder)

    def merge(self, model: nn.Module) -> WhisperForConditionalGeneration:
        from dama_asr.adapters.mole import MoleError

        raise MoleError(
            "a MoLE routes each utterance to its own expert and cannot be merged into one model; "
            "export its experts (the experts/ folder is an adapter set) one per language"
        )


def load_mole(base: WhisperForConditionalGeneration, folder: str | Path) -> nn.Module:
    """A saved MoLE folder on a fresh base (the experts' base; refused by fingerprint otherwise)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from dama_asr.adapters.io import AdapterIntegrityError, check_safetensors, read_json
    from dama_asr.adapters.mole import MoleError, build_mole
    from dama_asr.adapters.sets import AdapterSet

    folder = Path(folder)
    index = read_json(folder / MOLE_INDEX)
    if index.get("format") != MOLE_FORMAT:
        raise MoleError(f"{folder / MOLE_INDEX}: not a {MOLE_FORMAT} index")
    experts = AdapterSet.load(folder / EXPERTS_DIR)
    if experts.languages != index.get("languages"):
        raise MoleError(
            f"{folder}: {EXPERTS_DIR}/ holds {experts.languages}, mole.json says {index.get('languages')}"
        )
    controller = build_mole(base, experts, int(index["l1"]), int(index["router_hidden"]))
    check_safetensors(folder / MOLE_WEIGHTS)
    try:
        state = load_file(str(folder / MOLE_WEIGHTS))
        controller.load_state_dict(state)
    except (SafetensorError, RuntimeError) as err:
        raise AdapterIntegrityError(f"{folder / MOLE_WEIGHTS}: does not fit this MoLE ({err})") from None
    base.requires_grad_(False)
    return base


register(Mole())
