"""The method registry: one `MethodSpec` per adapter method, registered once by its family module.

Everything that depends on which method a config names asks the spec (peft's `register_peft_method`
pattern): how it validates and resolves its options, plans modules and ranks, initialises, which
parameters train, whether it adapts the encoder, how it saves, loads and merges, and how reports show
it. Nothing outside `adapters/families/` compares method names (tests/adapters/test_registry.py checks).

This module and the family modules import no torch, transformers or peft at import time, so that
`dama --help` can list the methods for free; the heavy work happens inside the methods.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dama_asr.errors import DamaError

if TYPE_CHECKING:
    from pathlib import Path

    from torch import nn
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from dama_asr.adapters.config import AdapterConfig
    from dama_asr.adapters.plan import ModulePlan

FAMILIES_PACKAGE = "dama_asr.adapters.families"
_SPECS: dict[str, MethodSpec] = {}
_loaded = False


class UnknownMethodError(DamaError, ValueError):
    """A method name no family registered; the message lists the registered ones."""


class MethodSpec:
    """What one adapter method is. Subclasses override what differs; the defaults are a peft adapter.

    name: the `--method` value.  family: the module that defines it (dama's ablations share "dama").
    label, colour, order: how reports, tables and plots show it (order: position in tables, legends
    and `--method` choices).  summary: one line for help texts and model cards.
    default_targets: the linears adapted when a config gives none.
    """

    name: str = ""
    family: str = ""
    label: str = ""
    colour: str = "#7f7f7f"
    order: int = 100
    summary: str = ""
    default_targets: tuple[str, ...] = ("all",)
    # The method saves every weight of the model, not adapter factors (full fine-tuning).
    saves_full_model: bool = False
    # `r` is required (no default); uniform baselines given no --r by `dama plan` get rank 32.
    requires_rank: bool = False
    # Built over saved language experts (`--experts DIR`): its options come from `experts_options`,
    # and it trains with this objective and sampler unless the user says otherwise.
    builds_on_experts: bool = False
    default_objective: str | None = None
    default_sampler: str | None = None
    # How the encoder's ranks may vary with depth (AdapterConfig.encoder_schedule); the first is the default.
    encoder_schedules: tuple[str, ...] = ("uniform",)
    # What `dama tune` searches without --axis, in order (`dama_asr.tune.space` syntax): the learning
    # rate first (it matters most), then the adapter's size; values a factor ~3 apart.
    tune_axes: tuple[str, ...] = ("optim.lr=3e-4|1e-3|3e-3", "adapter.r=16|32|64")

    def experts_options(self, experts: Path, encoder_layers: int, **flags: Any) -> dict[str, Any]:
        """`AdapterConfig.extra` for this method over the saved experts (methods that build on them)."""
        raise NotImplementedError(f"method {self.name} does not build on experts")

    # ---- configuration -------------------------------------------------------------------------
    def resolve(self, cfg: AdapterConfig) -> dict[str, Any]:
        """Validate the method's own options; return the fields to store as the values actually used.

        Called by `AdapterConfig.__post_init__`, so a saved config (config.yaml, dama_adapter.json)
        states what ran, and resolving a resolved config changes nothing (resume compares them).
        Raise `AdapterConfigError` naming the field.
        """
        return {}

    def adapts_encoder(self, cfg: AdapterConfig) -> bool:
        """Whether the encoder's weights change (then its outputs cannot be cached)."""
        return cfg.encoder

    # ---- plan ----------------------------------------------------------------------------------
    def plan(self, config: WhisperConfig, cfg: AdapterConfig) -> list[ModulePlan]:
        """Every adapted linear with its rank, init and trained parts, from the config alone."""
        return []

    def trainable_parameters(self, config: WhisperConfig, cfg: AdapterConfig) -> int:
        return sum(row.trainable_parameters for row in self.plan(config, cfg))

    def trained_names(self, row: ModulePlan) -> set[str]:
        """Names of the parameters that train inside one adapted module (relative to the module)."""
        return set()

    # ---- model ---------------------------------------------------------------------------------
    def apply(self, model: WhisperForConditionalGeneration, cfg: AdapterConfig) -> nn.Module:
        """The model ready to train: exactly the planned parameters have requires_grad."""
        raise NotImplementedError(f"method {self.name} cannot be applied")

    def save(self, model: nn.Module, cfg: AdapterConfig, folder: Path) -> None:
        """Write the weights (and adapter_config.json) into `folder`; `save_adapter` adds the rest."""
        model.save_pretrained(folder)

    def load(self, base: WhisperForConditionalGeneration, folder: Path) -> nn.Module:
        """What `save` wrote, on a fresh base model; the folder is already verified."""
        from dama_asr.adapters.io import load_peft_folder

        return load_peft_folder(base, folder)

    def merge(self, model: nn.Module) -> WhisperForConditionalGeneration:
        """A plain Whisper with the adapter folded into its weights."""
        from dama_asr.adapters.methods import merge_adapter

        return merge_adapter(model)


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method; its family module calls this once at import."""
    if not spec.name or not spec.family or not spec.label:
        raise ValueError(f"a method spec needs name, family and label: {type(spec).__name__}")
    if spec.name in _SPECS:
        raise ValueError(f"method {spec.name!r} is registered twice ({type(_SPECS[spec.name]).__name__})")
    _SPECS[spec.name] = spec
    return spec


def _load_families() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True  # first: a family module that asks the registry while importing sees itself
    try:
        importlib.import_module(FAMILIES_PACKAGE)
    except BaseException:
        _loaded = False
        raise


def all_methods() -> list[MethodSpec]:
    """Every registered spec, in `order` (then name)."""
    _load_families()
    return sorted(_SPECS.values(), key=lambda s: (s.order, s.name))


def method_names() -> tuple[str, ...]:
    return tuple(spec.name for spec in all_methods())


def get_method(name: str) -> MethodSpec:
    _load_families()
    try:
        return _SPECS[name]
    except (KeyError, TypeError):
        raise UnknownMethodError(
            f"method: unknown {name!r}; choose one of {', '.join(method_names())}"
        ) from None


def method_of_label(label: str) -> MethodSpec | None:
    """The spec behind a report label such as "dama (bf16)" (a method with its precision), or None."""
    _load_families()
    return _SPECS.get(label.split(" (")[0])
