"""Does adaptation flatten the U? Decoder language-ID probes of Whisper-base before and after adapting.

Probes the base model and each given `dama train` output on the same utterances (the first N of every
built synthetic corpus's dev split), decoder layers only, neutral prompt (no language token), 5-fold CV.
The encoder is frozen in every model probed here, so its outputs are computed once and shared.

Run: python benchmarks/probe-after-adaptation/run.py [--per-language 16] [NAME=RUN_DIR/best ...]
Default adapters: the 0.5 h Welsh DAMA and full fine-tuning cells of the whisper-base-grid study.
Writes results.json and probe_after_adaptation.png here.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_CELLS = ("synth-cy__dama__0.5h__seed0", "synth-cy__full__0.5h__seed0")


def plot_curves(curves: dict[str, dict], chance: float, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), dpi=120)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    for name, curve in curves.items():
        layers = curve["layers"]
        depth = [layer / layers[-1] for layer in layers]
        low = [m - s for m, s in zip(curve["mean"], curve["std"], strict=True)]
        high = [m + s for m, s in zip(curve["mean"], curve["std"], strict=True)]
        ax.fill_between(depth, low, high, alpha=0.15, linewidth=0)
        ax.plot(depth, curve["mean"], "o-", label=name)
    ax.axhline(chance, color="grey", linestyle=":", label=f"chance ({chance:.2f})")
    ax.set_xlabel("relative decoder depth (0 = embeddings)")
    ax.set_ylabel("language-ID accuracy (5-fold CV)")
    ax.set_title("Decoder language-ID probe before and after adaptation (Whisper-base)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    figure.tight_layout()
    figure.savefig(path)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("adapters", nargs="*", help="NAME=FOLDER (a `dama train` best/ or final/ folder)")
    p.add_argument("--per-language", type=int, default=16)
    p.add_argument("--note", default="")
    args = p.parse_args()

    from dama_asr.backbone.loading import load_backbone
    from dama_asr.data.manifest import read_manifest
    from dama_asr.data.synth import default_synth_dir
    from dama_asr.paths import dama_home
    from dama_asr.probe import ProbeOptions, run_probe
    from dama_asr.probe_commands import with_merged_adapter

    adapters = dict(a.split("=", 1) for a in args.adapters)
    if not adapters:
        runs = dama_home() / "bench" / "whisper-base-grid" / "runs"
        adapters = {cell.split("__")[1] + " (cy 0.5 h)": str(runs / cell / "best") for cell in DEFAULT_CELLS}
    missing = [f"{name}: {folder}" for name, folder in adapters.items() if not Path(folder).is_dir()]
    if missing:
        sys.exit("adapter folder(s) not found (run the study cells first):\n  " + "\n  ".join(missing))
    corpora = sorted(default_synth_dir().glob("*/dev.jsonl"))
    items = [u for path in corpora for u in read_manifest(path)[: args.per_language]]
    options = ProbeOptions(folds=5, layers="decoder", reuse_encoder_outputs=True)

    curves, timings = {}, {}
    for name, folder in {"base": None, **adapters}.items():
        start = time.perf_counter()
        backbone = load_backbone("whisper-base")
        if folder:
            backbone = with_merged_adapter(backbone, folder)
        result = run_probe(backbone, items, options)
        d = result.decoder
        curves[name] = {"layers": list(d.layers), "mean": list(d.mean), "std": list(d.std),
                        "thetas": list(result.thetas), "fallback": result.suggestion.fallback,
                        "adapter": folder}  # fmt: skip
        timings[name] = round(time.perf_counter() - start, 1)
        print(f"{name}: " + " ".join(f"{m:.3f}" for m in d.mean) + f"  ({timings[name]:.0f} s)", flush=True)
    summary = {
        "command": "python benchmarks/probe-after-adaptation/run.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()} {platform.system()}",
        "note": args.note,
        "languages": dict(result.languages),
        "chance": result.chance,
        "settings": {"folds": 5, "prompt": "neutral", "layers": "decoder", "per_language": args.per_language},
        "curves": curves,
        "seconds": timings,
    }
    (HERE / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"wrote {HERE / 'results.json'} and {plot_curves(curves, result.chance, HERE / 'probe_after_adaptation.png')}"
    )


if __name__ == "__main__":
    main()
