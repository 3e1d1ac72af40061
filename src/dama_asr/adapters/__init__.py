"""Adapter methods behind one registry (`registry.py`; one module per family in `families/`):
full, lora, lora-fa, pissa, milora, dora, vera, dama and its ablations.

Names resolve lazily so that `dama --help` and argument parsing do not pay for importing peft.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "METHODS": "config",
    "MethodSpec": "registry",
    "all_methods": "registry",
    "get_method": "registry",
    "method_names": "registry",
    "register": "registry",
    "AdapterConfig": "config",
    "AdapterConfigError": "config",
    "apply_adapter": "methods",
    "base_model_of": "methods",
    "trainable_parameter_count": "methods",
    "adapted_backbone": "io",
    "load_adapted": "io",
    "read_adapter_meta": "io",
    "save_adapter": "io",
    "plan_modules": "plan",
    "plan_table": "plan",
    "trainable_parameters": "plan",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
