"""One module per adapter family; importing this package registers every method (peft's pattern:
each method registers itself once, and nothing else names it)."""

from dama_asr.adapters.families import dama, dora, full, lora, mole, svd_residual, vera

__all__ = ["dama", "dora", "full", "lora", "mole", "svd_residual", "vera"]
