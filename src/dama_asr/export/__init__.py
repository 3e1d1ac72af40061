"""`dama export`: saved adapters and adapter sets as merged transformers, PEFT or CTranslate2 models.

`export_adapter` (api.py) is the entry point; `source.py` reads what a folder records, `merged.py`
merges and checks, `ct2.py` converts, `card.py` writes the model cards. Names resolve lazily, so
`dama --help` does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "FORMATS": "formats",
    "export_adapter": "api",
    "ExportError": "source",
    "QUANTIZATIONS": "formats",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
