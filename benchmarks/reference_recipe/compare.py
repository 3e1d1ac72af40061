"""`dama train --method dama` side by side with the standard recipe, same model, data and machine.

The standard recipe (hf_recipe.py) is what users run today: Seq2SeqTrainer + peft LoRA r=32 on
q_proj/v_proj of encoder and decoder, the encoder run on every step. Both runs:
- start from a fresh $DAMA_HOME (so dama's encoder cache is cold and its building is counted),
- train on the same hour subset for the same epochs at the same batch size,
- are scored on the same dev utterances by the same evaluator,
- run one after the other in their own process (peak RSS is per process).
Training time excludes dev scoring for both (dama scores dev each epoch, the recipe once at the end).

Run: python benchmarks/reference_recipe/compare.py [--language cy] [--hours 0.1] [--epochs 3]
Prints samples/s, peak memory, dev WER and wall-clock for both and their ratios; writes results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_logged(cmd: list[str], env: dict, log: Path) -> str:
    """Run `cmd`, streaming its output to `log`; returns stdout+stderr, exits with the log's tail on failure."""
    print("$ " + " ".join(cmd), flush=True)
    with log.open("w") as fh:
        proc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False)
    text = log.read_text()
    if proc.returncode:
        sys.exit(
            f"command failed ({proc.returncode}); last lines of {log}:\n" + "\n".join(text.splitlines()[-20:])
        )
    return text


def dama_executable() -> str:
    """The `dama` script of the running interpreter's environment, so an unactivated venv works too."""
    beside = Path(sys.executable).with_name("dama")
    return str(beside) if beside.exists() else "dama"


def time_to_reach(epochs: list[dict], target_wer: float) -> float | None:
    """Training seconds (cache building included) until dama's dev WER first reaches `target_wer`."""
    elapsed = 0.0
    for epoch in epochs:
        elapsed += epoch["seconds"]
        if epoch["dev_wer"] is not None and epoch["dev_wer"] <= target_wer:
            return elapsed
    return None


def run_recipe(args: argparse.Namespace, train: Path, dev: Path, env: dict, work: Path) -> dict:
    """The standard recipe in its own process; returns its RESULT line."""
    start = time.perf_counter()
    text = run_logged(
        [sys.executable, str(HERE / "hf_recipe.py"), "--model", args.model, "--train", str(train), "--dev", str(dev),
         "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--out", str(work / "recipe"),
         "--targets", args.recipe_targets],
        env, work / "recipe.log",
    )  # fmt: skip
    recipe = json.loads(next(line for line in text.splitlines() if line.startswith("RESULT "))[7:])
    recipe["wall_seconds"] = round(time.perf_counter() - start, 1)
    return recipe


def earlier_recipe(path: Path, args: argparse.Namespace, dev_utterances: int) -> dict:
    """The recipe's numbers from an earlier results.json, checked to be on the same data and epochs."""
    earlier = json.loads(path.read_text())
    wanted = {"language": args.language, "hours": args.hours, "dev_utterances": dev_utterances}
    decoder_only = earlier["recipe"]["recipe"].endswith("(decoder only)")
    if decoder_only != (args.recipe_targets == "decoder"):
        sys.exit(
            f"{path} holds the recipe with other LoRA targets than --recipe-targets {args.recipe_targets}"
        )
    if {k: earlier["data"].get(k) for k in wanted} != wanted or earlier["recipe"]["epochs"] != args.epochs:
        sys.exit(f"{path} was run on other data or epochs ({earlier['data']}); run the recipe again")
    return earlier["recipe"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="whisper-base", help="tiny-random for a quick smoke run")
    p.add_argument(
        "--r-high", type=int, default=32, help="DAMA ranks (the paper's 32/8; 8/2 for tiny-random)"
    )
    p.add_argument("--r-low", type=int, default=8)
    p.add_argument("--language", default="cy", help="a corpus built by `dama data synth`")
    p.add_argument("--hours", type=float, default=0.1, help="training budget (nested subset, seed 0)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument(
        "--dama-epochs",
        type=int,
        help="train dama longer than the recipe (default: --epochs) to see when it reaches the recipe's dev WER",
    )
    p.add_argument(
        "--recipe-from", help="reuse the recipe's run from this earlier results.json (same data and epochs)"
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument(
        "--recipe-targets", choices=["encoder-decoder", "decoder"], default="encoder-decoder",
        help="the recipe's LoRA on encoder and decoder q/v (peft's example) or on the decoder only",
    )  # fmt: skip
    p.add_argument("--max-dev", type=int, default=40, help="dev utterances scored (the first N)")
    p.add_argument("--note", default="")
    p.add_argument("--out", default=str(HERE / "results.json"))
    args = p.parse_args()

    from dama_asr.data.manifest import read_manifest, write_manifest
    from dama_asr.data.subset import hour_subset
    from dama_asr.data.synth import default_synth_dir

    corpus = default_synth_dir() / args.language
    work = Path(tempfile.mkdtemp(prefix="dama-compare-"))
    train = work / "train.jsonl"
    write_manifest(train, hour_subset(read_manifest(corpus / "train.jsonl"), args.hours, seed=0))
    # The same dev utterances for both: the first N (dama's own --max-dev would draw a seeded sample).
    dev = work / "dev.jsonl"
    dev_items = read_manifest(corpus / "dev.jsonl")
    write_manifest(dev, dev_items[: args.max_dev] if args.max_dev else dev_items)
    env = {**os.environ, "DAMA_HOME": str(work / "home"), "PYTHONUNBUFFERED": "1"}
    # Convert the embedded model before timing anything; both runs then load it the same way.
    subprocess.run([sys.executable, "-c", "from dama_asr.backbone.embedded import prepare_embedded_whisper_base as p; p()"],
                   env=env, check=True)  # fmt: skip

    if args.recipe_from:
        recipe = earlier_recipe(Path(args.recipe_from), args, len(read_manifest(dev)))
    else:
        recipe = run_recipe(args, train, dev, env, work)
    dama_epochs = args.dama_epochs or args.epochs

    start = time.perf_counter()
    run_logged(
        [dama_executable(), "train", "--method", "dama", "--r-high", str(args.r_high), "--r-low", str(args.r_low), "--model", args.model, "--train", str(train), "--dev", str(dev),
         "--epochs", str(dama_epochs), "--batch-size", str(args.batch_size), "--max-dev", "0",
         "--patience", "0", "--out", str(work / "dama"), "--no-progress", "--json"],
        env, work / "dama.log",
    )  # fmt: skip
    summary = json.loads((work / "dama" / "summary.json").read_text())
    # Throughput over the recipe's number of epochs (the same work); longer dama runs only add the
    # time-to-WER answer below.
    same_work = summary["epochs"][: args.epochs]
    dama_train_s = sum(e["seconds"] for e in same_work)
    n_train = summary["train_utterances"]
    dama = {
        "recipe": f"dama train --method dama (r_high {args.r_high}, r_low {args.r_low}, every decoder linear)",
        "trainable_parameters": summary["trainable_parameters"],
        "train_utterances": n_train,
        "epochs": len(summary["epochs"]),
        "train_seconds": round(dama_train_s, 1),  # over the recipe's epochs
        "train_seconds_all_epochs": round(sum(e["seconds"] for e in summary["epochs"]), 1),
        "encoder_cache_build_seconds": round(summary["encoder_cache_build_seconds"], 1),
        "epoch_seconds": [round(e["seconds"], 1) for e in summary["epochs"]],
        "samples_per_second": round(n_train * len(same_work) / dama_train_s, 3),
        "peak_rss_gib": round(summary["peak_rss_bytes"] / 2**30, 2),
        "dev_wer_per_epoch": [e["dev_wer"] for e in summary["epochs"]],
        "dev_wer": same_work[-1]["dev_wer"],  # after the recipe's number of epochs
        "best_dev_wer": min(e["dev_wer"] for e in summary["epochs"]),
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    reach = time_to_reach(summary["epochs"], recipe["dev_wer"])
    ratios = {
        "samples_per_second (dama / recipe)": round(
            dama["samples_per_second"] / recipe["samples_per_second"], 2
        ),
        "peak_rss (dama / recipe)": round(dama["peak_rss_gib"] / recipe["peak_rss_gib"], 2),
        "trainable_parameters (dama / recipe)": round(
            dama["trainable_parameters"] / recipe["trainable_parameters"], 3
        ),
        "time to the recipe's final dev WER (dama / recipe)": (
            round(reach / recipe["train_seconds"], 3) if reach is not None else "not reached"
        ),
    }
    result = {
        "model": args.model,
        "command": "python benchmarks/reference_recipe/compare.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
        "note": args.note,
        "data": {
            "language": args.language,
            "hours": args.hours,
            "train_utterances": n_train,
            "dev_utterances": len(read_manifest(dev)),
        },  # fmt: skip
        "seeds": 1,
        "recipe": recipe,
        "dama": dama,
        "ratios": ratios,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name, row in (("recipe", recipe), ("dama", dama)):
        print(f"{name:7s} {row['samples_per_second']:7.3f} samples/s  peak RSS {row['peak_rss_gib']:.2f} GiB  "
              f"train {row['train_seconds']:7.1f} s  dev WER {row['dev_wer']:.1%}  trainable {row['trainable_parameters']:,}")  # fmt: skip
    for name, value in ratios.items():
        print(f"{name}: {value}")
    print(f"wrote {args.out}; logs in {work}")


if __name__ == "__main__":
    main()
