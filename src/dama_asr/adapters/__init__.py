"""Adapter methods behind one registry: full, lora, lora-fa, pissa, milora, dora, dama and its ablations."""

from dama_asr.adapters.config import METHODS, AdapterConfig, AdapterConfigError
from dama_asr.adapters.io import load_adapted, read_adapter_meta, save_adapter
from dama_asr.adapters.methods import apply_adapter, base_model_of, trainable_parameter_count
from dama_asr.adapters.plan import plan_modules, plan_table, trainable_parameters

__all__ = [
    "METHODS",
    "AdapterConfig",
    "AdapterConfigError",
    "apply_adapter",
    "base_model_of",
    "load_adapted",
    "plan_modules",
    "plan_table",
    "read_adapter_meta",
    "save_adapter",
    "trainable_parameter_count",
    "trainable_parameters",
]
