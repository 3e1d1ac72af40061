"""Where in Whisper-base's encoder does adaptation pay? The two encoder probes, on dev splits only.

1. `dama probe --task chars` per corpus: a linear CTC head per encoder layer spelling the transcript;
   held-out CER by layer (the acoustic reading of the encoder: where its frames become text).
2. `dama probe --layers encoder` on the dev splits of every built corpus together: a pooled linear
   language-ID classifier per encoder layer, 5-fold CV (the paper's probe, moved to the encoder).

Run: python benchmarks/encoder-probe/run.py [--reuse]
Each probe writes into $DAMA_HOME/bench/encoder-probe/<name>/ (--reuse keeps a finished one); this
script then collects them into results.json and encoder_probe.png here. Dev splits only: what the probes
say chooses `encoder_from` and `--encoder-schedule`, a hyperparameter choice.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHAR_CORPORA = {"cs": "czech-fillets/dev.jsonl", "cy": "synth/cy/dev.jsonl"}
LID_CORPORA = ("synth/cy", "synth/lt", "synth/ka", "synth/sl", "synth/lv", "czech-fillets")


def _probe(out: Path, args: list[str], reuse: bool, result: str) -> dict:
    if not (reuse and (out / result).is_file()):
        command = [sys.executable, "-m", "dama_asr.cli", "probe", *args, "--out", str(out)]
        subprocess.run(command, check=True)
    return json.loads((out / result).read_text())


def lid_manifest(corpora: Path, work: Path) -> Path:
    """Every built corpus's dev split in one manifest (absolute audio paths)."""
    from dama_asr.data.manifest import read_manifest, write_manifest

    items = []
    for name in LID_CORPORA:
        path = corpora / name / "dev.jsonl"
        if path.is_file():
            items += read_manifest(path)
    return write_manifest(work / "dev-all.jsonl", items, relative=False)


def plot(chars: dict[str, dict], lid: dict, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.2), dpi=120)
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    for code, data in chars.items():
        layers = [row["layer"] for row in data["layers"]]
        left.plot(layers, [row["cer"] for row in data["layers"]], "o-", label=code)
    left.set_xlabel("encoder layer (0 = embeddings)")
    left.set_ylabel("held-out CER of a linear CTC probe")
    left.set_title("Where the encoder's frames spell the text")
    left.grid(alpha=0.3)
    left.legend()
    curve = lid["encoder"]
    right.errorbar(curve["layers"], curve["mean"], yerr=curve["std"], fmt="o-", capsize=3)
    right.axhline(lid["chance"], color="grey", linestyle=":", label=f"chance ({lid['chance']:.2f})")
    right.set_xlabel("encoder layer (0 = embeddings)")
    right.set_ylabel("language-ID accuracy (5-fold CV)")
    right.set_title("Pooled language ID per encoder layer")
    right.set_ylim(0, 1.02)
    right.grid(alpha=0.3)
    right.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)
    return path


def machine() -> str:
    """The CPU model and core count (what the probes' seconds depend on)."""
    import os

    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} cores, {platform.system()}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reuse", action="store_true", help="keep probes already finished in the work folder")
    p.add_argument("--per-language", type=int, default=100, help="language-ID probe: utterances per language")
    p.add_argument("--note", default="")
    args = p.parse_args()

    from dama_asr.paths import dama_home

    corpora, work = dama_home() / "corpora", dama_home() / "bench" / "encoder-probe"
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    chars = {}
    for code, rel in CHAR_CORPORA.items():
        if (corpora / rel).is_file():
            chars[code] = _probe(work / f"chars-{code}", ["--task", "chars", "--manifest", str(corpora / rel)],
                                 args.reuse, "chars_probe.json")  # fmt: skip
    manifest = lid_manifest(corpora, work)
    lid_args = [
        "--layers",
        "encoder",
        "--manifest",
        str(manifest),
        "--max-per-language",
        str(args.per_language),
    ]
    lid = _probe(work / "lid-encoder", lid_args, args.reuse, "probe.json")
    encoder = lid["encoder"]
    results = {
        "command": "python benchmarks/encoder-probe/run.py" + (" --reuse" if args.reuse else ""),
        "machine": machine(),
        "note": args.note,
        "seconds": round(time.perf_counter() - started, 1),
        "char_curves": {code: {"layers": [r["layer"] for r in d["layers"]], "cer": [r["cer"] for r in d["layers"]],
                               "best_layer": d["best_layer"], "train_utterances": d["train_utterances"],
                               "heldout_utterances": d["heldout_utterances"]} for code, d in chars.items()},
        "lid_curve": {"layers": encoder["layers"], "mean": encoder["mean"], "std": encoder["std"],
                      "chance": lid["chance"], "languages": lid["languages"], "folds": lid["settings"]["folds"]},
    }  # fmt: skip
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"wrote {HERE / 'results.json'} and {plot(chars, {**lid, 'encoder': encoder}, HERE / 'encoder_probe.png')}"
    )


if __name__ == "__main__":
    main()
