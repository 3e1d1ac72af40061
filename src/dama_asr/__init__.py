"""dama-asr: depth-aware, parameter-efficient adaptation of Whisper to low-resource languages.

The Python API is what the `dama` commands call, importable from here (see the README's "Python API"):

    import dama_asr as dama
    backbone = dama.load_backbone("whisper-base")
    summary = dama.run_training(dama.TrainConfig.from_dict({"model": "whisper-base", "train": "train.jsonl",
                                                    "adapter": {"method": "dama"}, "output_dir": "runs/cy"}))
    adapted = dama.adapted_backbone(backbone, "runs/cy/best")
    result = dama.evaluate_items(adapted, dama.read_manifest("test.jsonl"))

Names resolve on first use, so `import dama_asr` (and `dama --help`) does not pay for torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # the model
    "Backbone": "dama_asr.backbone.loading",
    "load_backbone": "dama_asr.backbone.loading",
    # data
    "Utterance": "dama_asr.data.manifest",
    "read_manifest": "dama_asr.data.manifest",
    "write_manifest": "dama_asr.data.manifest",
    "load_audio": "dama_asr.data.audio",
    "validate_manifest": "dama_asr.data.validate",
    "hour_subset": "dama_asr.data.subset",
    # adapters
    "AdapterConfig": "dama_asr.adapters.config",
    "apply_adapter": "dama_asr.adapters.methods",
    "save_adapter": "dama_asr.adapters.io",
    "adapted_backbone": "dama_asr.adapters.io",
    "plan_modules": "dama_asr.adapters.plan",
    "plan_table": "dama_asr.adapters.plan",
    "trainable_parameters": "dama_asr.adapters.plan",
    "get_method": "dama_asr.adapters.registry",
    "method_names": "dama_asr.adapters.registry",
    "AdapterSet": "dama_asr.adapters.sets",
    # training
    "TrainConfig": "dama_asr.train.config",
    "load_recipe": "dama_asr.train.config",
    "run_training": "dama_asr.train.loop",  # `train` itself would clash with the dama_asr.train package
    "train_experts": "dama_asr.train.experts",
    # decoding and scoring
    "DecodingOptions": "dama_asr.inference.decoding",
    "transcribe": "dama_asr.inference.decoding",
    "transcribe_routed": "dama_asr.inference.routing",
    "transcribe_mole": "dama_asr.inference.mole_decoding",
    "detect_languages": "dama_asr.inference.lid",
    "mean_language_probabilities": "dama_asr.inference.lid",
    "evaluate_items": "dama_asr.evaluate",
    "write_result": "dama_asr.evaluate",
    # probing
    "ProbeOptions": "dama_asr.probe.run",
    "run_probe": "dama_asr.probe.run",
    "load_probe": "dama_asr.probe.result",
    "save_probe": "dama_asr.probe.result",
    "plot_probe": "dama_asr.probe.result",
    # errors
    "DamaError": "dama_asr.errors",
}
_RENAMED = {"run_training": "train"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dama_asr' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), _RENAMED.get(name, name))
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
