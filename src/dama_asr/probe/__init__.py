"""Layer-wise language-ID linear probing of Whisper's decoder and encoder (DAMA's U-shape).

    from dama_asr.probe import ProbeOptions, run_probe, plot_probe, save_probe, load_probe
    result = run_probe(load_backbone("whisper-base"), read_manifest("probe.jsonl"), ProbeOptions(folds=5))
    save_probe(result, "probe.json"); plot_probe(result, "probe.png")
    theta1, theta2 = load_probe("probe.json").thetas   # what the DAMA planner reads

features.py: teacher-forced, mean-pooled hidden states.  curve.py: the cross-validated classifier and
the theta suggestion (pure functions).  result.py: the result dataclass, JSON and plot.  run.py: run_probe.
"""

from dama_asr.probe.curve import (
    DEFAULT_THETAS,
    FoldScores,
    ProbeError,
    ThetaSuggestion,
    check_label_counts,
    cross_validate,
    default_thetas,
    suggest_thetas,
)
from dama_asr.probe.features import PROMPTS, LayerFeatures, ProbeInput, extract_features, prompt_ids
from dama_asr.probe.result import LayerCurve, ProbeResult, load_probe, plot_probe, save_probe
from dama_asr.probe.run import ProbeOptions, run_probe

__all__ = [
    "DEFAULT_THETAS",
    "PROMPTS",
    "FoldScores",
    "LayerCurve",
    "LayerFeatures",
    "ProbeError",
    "ProbeInput",
    "ProbeOptions",
    "ProbeResult",
    "ThetaSuggestion",
    "check_label_counts",
    "cross_validate",
    "default_thetas",
    "extract_features",
    "load_probe",
    "plot_probe",
    "prompt_ids",
    "run_probe",
    "save_probe",
    "suggest_thetas",
]
