"""Speed benchmark: training and transcription modes side by side, in one run, on one machine.

    python benchmarks/speed/run.py                      # every mode; finished modes are kept (resumable)
    python benchmarks/speed/run.py --modes peak,dama-auto --redo

Modes (same 0.5 h of synthetic Welsh, seed-0 nested subset; each training mode in its own process with
an empty encoder cache, so "cold cache counted" holds; no dev evaluation, so only training is timed):
- peak:            this CPU's matmul rate, fp32 and bf16, all threads (4096 x 4096, best of 5);
- recipe-fp32/bf16: benchmarks/reference_recipe/hf_recipe.py (Seq2SeqTrainer + peft LoRA r=32 on q_proj,
                   v_proj, encoder run every step), with `bf16=True` for the second, under plain Python as a
                   user runs it. Its cost per epoch is constant (nothing is cached), so it trains
                   `--recipe-epochs` epochs and its 3-epoch time is that rate times 3 (said in the result);
- dama-fp32/auto:  `dama train --method dama --epochs 3` at --precision no / auto (cache build + 3 epochs);
- dama-auto-kv:    the same with the frozen cross-attention K/V kept in RAM (--cross-kv-cache-gib -1);
- lora-encoder:    `dama train --method lora --r 32 --alpha 64 --targets qv --encoder`: the recipe's
                   adapter placement in our engine (encoder adapted, so no cache), `--recipe-epochs` epochs;
- lora-encoder-top: the same adapter on encoder layers 4-6 only (`--encoder-from 4`): layers 1-3 are
                   frozen, run once per utterance and cached (cold cache counted once);
- step:            one cached DAMA step in-process: seconds per step, and its FLOPs counted by
                   torch.profiler (with_flops: mm/addmm/bmm; attention is not counted, so the achieved
                   fraction of peak is a lower bound), at fp32 and bf16;
- kv:              the frozen cross-attention K/V of a batch of 8: recomputed (6 layers x 2 projections of
                   1500 frames) against read back from an in-memory bf16 cache, at fp32 and bf16;
- transcribe:      batched greedy transcription of test utterances, fp32 vs bf16: real-time factor and
                   how often the two agree word for word;
- curve-<h>:       `dama train --method dama` (auto) at 0.1, 1 and 2 h: cold cache + 3 epochs;
- <mode>-memory:   re-measure a finished recipe or lora-encoder mode's peak RSS over its first steps.
Peak memory is each child's own VmHWM (resident high-water mark), polled.
Results: benchmarks/speed/results.json (with the machine), generated into docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TRAIN_MODES = ("recipe-fp32", "recipe-bf16", "dama-fp32", "dama-auto", "dama-auto-kv", "lora-encoder",
               "lora-encoder-top")  # fmt: skip
ALL_MODES = ("peak", "step", "kv", "transcribe", *TRAIN_MODES, "curve-0.1", "curve-1", "curve-2")


# ---- helpers -------------------------------------------------------------------------------------
def machine() -> dict:
    import torch

    from dama_asr.allocator import active_allocator, tcmalloc_path
    from dama_asr.precision import cpu_bf16_units

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())  # fmt: skip
    return {"cpu": model, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "bf16_units": list(cpu_bf16_units()), "torch": torch.__version__, "python": platform.python_version(),
            "benchmark_allocator": active_allocator(), "tcmalloc": str(tcmalloc_path() or ""),
            "date": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip


def run_measured(command: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run a child; returns (result, wall seconds, its peak RSS in GiB).

    The peak is the child's own VmHWM, polled: wait4's ru_maxrss (and the child's own getrusage) start
    from the parent's RSS at fork time, so a parent holding models would inflate every child's number.
    """
    from dama_asr.memory import proc_kib

    start = time.perf_counter()
    peak = 0
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, env=env, text=True)
        while child.poll() is None:
            peak = max(peak, proc_kib(f"/proc/{child.pid}/status", "VmHWM"))
            time.sleep(0.2)
        wall = time.perf_counter() - start
        out.seek(0), err.seek(0)
        done = subprocess.CompletedProcess(command, child.returncode, out.read(), err.read())
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return done, wall, peak / 2**20


def cold_home(work: Path) -> Path:
    """A DAMA_HOME with the converted model but an empty cache (each mode pays its own encoding)."""
    from dama_asr.paths import dama_home

    home = Path(tempfile.mkdtemp(prefix="home-", dir=work))
    (home / "models").symlink_to(dama_home() / "models")
    return home


def subset(language: str, hours: float, work: Path) -> Path:
    from dama_asr.data.manifest import read_manifest, write_manifest
    from dama_asr.data.subset import hour_subset
    from dama_asr.data.synth import default_synth_dir

    path = work / f"{language}-{hours:g}h.jsonl"
    if not path.is_file():
        items = read_manifest(default_synth_dir() / language / "train.jsonl")
        write_manifest(path, hour_subset(items, hours, seed=0), relative=False)
    return path


# ---- training modes -------------------------------------------------------------------------------
def peak_memory_only(mode: str, manifest: Path, work: Path) -> float:
    """Peak RSS (GiB) of a training mode over its first steps (where a training run peaks)."""
    home = cold_home(work)
    env = {**os.environ, "DAMA_HOME": str(home)}
    try:
        if mode.startswith("recipe"):
            command = [sys.executable, str(ROOT / "benchmarks/reference_recipe/hf_recipe.py"), "--train", str(manifest),
                       "--dev", str(manifest), "--epochs", "0.1", "--skip-eval", "--out", str(home / "recipe")]  # fmt: skip
            command += ["--bf16"] if mode == "recipe-bf16" else []
            env["DAMA_ALLOCATOR"] = "system"
        else:
            command = [sys.executable, "-m", "dama_asr.cli", "train", "--model", "whisper-base", "--train", str(manifest),
                       "--dev", "", "--out", str(home / "run"), "--stop-after-steps", "6", "--no-progress", "--json",
                       "--method", "lora", "--r", "32", "--alpha-policy", "fixed", "--alpha", "64", "--targets", "qv",
                       "--encoder"]  # fmt: skip
        return run_measured(command, env)[2]
    finally:
        shutil.rmtree(home, ignore_errors=True)


def train_mode(mode: str, manifest: Path, work: Path, recipe_epochs: int) -> dict:
    from dama_asr.data.manifest import read_manifest

    n = len(read_manifest(manifest))
    home = cold_home(work)
    env = {**os.environ, "DAMA_HOME": str(home)}
    try:
        if mode.startswith("recipe"):
            command = [sys.executable, str(ROOT / "benchmarks/reference_recipe/hf_recipe.py"), "--train", str(manifest),
                       "--dev", str(manifest), "--epochs", str(recipe_epochs), "--skip-eval", "--out", str(home / "recipe")]  # fmt: skip
            if mode == "recipe-bf16":
                command.append("--bf16")
            env["DAMA_ALLOCATOR"] = "system"  # as a user runs it: plain Python
            done, wall, rss = run_measured(command, env)
            summary = json.loads(done.stdout.split("RESULT ", 1)[1].splitlines()[0])
            seconds, epochs = summary["train_seconds"], recipe_epochs
            return {"mode": mode, "utterances": n, "epochs_run": epochs, "train_seconds": seconds,
                    "samples_per_second": n * epochs / seconds, "three_epoch_seconds": seconds / epochs * 3,
                    "three_epochs": "extrapolated: constant cost per epoch" if epochs != 3 else "measured",
                    "wall_seconds": wall, "peak_rss_gib": rss, "precision": summary["precision"],
                    "allocator": "system", "trainable_parameters": summary["trainable_parameters"]}  # fmt: skip
        encoder = mode.startswith("lora-encoder")
        epochs = recipe_epochs if encoder else 3
        adapter = (["--method", "lora", "--r", "32", "--alpha-policy", "fixed", "--alpha", "64", "--targets", "qv",
                    "--encoder"] if encoder else ["--method", "dama"])  # fmt: skip
        if mode == "lora-encoder-top":
            adapter += ["--encoder-from", "4"]
        precision = "no" if mode == "dama-fp32" else "auto"
        if mode == "dama-auto-kv":  # the frozen cross-attention K/V kept in RAM (a quarter of what is free)
            adapter += ["--cross-kv-cache-gib", "-1"]
        command = [sys.executable, "-m", "dama_asr.cli", "train", "--model", "whisper-base", "--train", str(manifest),
                   "--dev", "", "--out", str(home / "run"), "--epochs", str(epochs), "--precision", precision,
                   "--no-progress", "--json", *adapter]  # fmt: skip
        done, wall, rss = run_measured(command, env)
        summary = json.loads(done.stdout)
        cache = summary["encoder_cache_build_seconds"]
        train = sum(h["train_seconds"] for h in summary["epochs"])
        return {"mode": mode, "utterances": n, "epochs_run": epochs, "cache_seconds": cache, "train_seconds": train,
                "epoch_seconds": [h["train_seconds"] for h in summary["epochs"]],
                "samples_per_second": n * 3 / (cache + train / epochs * 3), "three_epoch_seconds": cache + train / epochs * 3,
                "three_epochs": "measured" if epochs == 3 else "extrapolated: the cache once, then constant cost per epoch",
                "encoder_cached_layers": summary.get("encoder_cached_layers", 0),
                "wall_seconds": wall, "peak_rss_gib": rss, "precision": summary["precision"],
                "allocator": summary["allocator"], "trainable_parameters": summary["trainable_parameters"]}  # fmt: skip
    finally:
        shutil.rmtree(home, ignore_errors=True)


# ---- in-process modes -----------------------------------------------------------------------------
def matmul_peak() -> dict:
    import torch

    def rate(dtype, n=4096, reps=5) -> float:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        best = float("inf")
        for _ in range(reps):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
        return 2 * n**3 / best / 1e9

    fp32, bf16 = rate(torch.float32), rate(torch.bfloat16)
    return {"fp32_gflops": fp32, "bf16_gflops": bf16, "bf16_over_fp32": bf16 / fp32, "size": 4096}


def cached_step(manifest: Path, work: Path) -> dict:
    from torch.profiler import ProfilerActivity, profile

    from dama_asr.train.config import TrainConfig
    from dama_asr.train.loop import Trainer
    from dama_asr.train.setup import build_cross_kv, build_encoder_cache, global_micro_batches

    out = {}
    for precision, stored_kv in (("no", False), ("bf16", False), ("bf16", True)):
        config = TrainConfig.from_dict({"model": "whisper-base", "train": str(manifest), "dev": "",
                                        "output_dir": str(work / f"step-{precision}-{time.time_ns()}"),
                                        "adapter": {"method": "dama"}, "precision": precision, "progress_bar": False,
                                        "cross_kv_cache_gib": -1.0 if stored_kv else 0.0})  # fmt: skip
        trainer = Trainer(config)
        examples = trainer.data.examples
        trainer.cache, _, _ = build_encoder_cache(trainer.accelerator, trainer.backbone, examples, 8)
        trainer.cross_kv = build_cross_kv(config, trainer.model, trainer.cache, examples, precision)
        assert (trainer.cross_kv is not None) == stored_kv
        micro = global_micro_batches(config, trainer.data.lengths, 1, 0)[:12]
        trainer._optimizer_step([micro[0]])  # warm-up
        start = time.perf_counter()
        for batch in micro[1:]:
            trainer._optimizer_step([batch])
        seconds = (time.perf_counter() - start) / (len(micro) - 1)
        with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
            for batch in micro[1:]:
                trainer._optimizer_step([batch])
        flops = sum(e.flops for e in prof.key_averages()) / (len(micro) - 1)
        tokens = sum(len(trainer.data.examples[i].tokens) for b in micro[1:] for i in b) / (len(micro) - 1)
        out[precision + ("+stored-kv" if stored_kv else "")] = {"seconds_per_step": seconds, "gflop_per_step": flops / 1e9, "achieved_gflops": flops / seconds / 1e9,
                          "batch": config.optim.batch_size, "tokens_per_step": tokens}  # fmt: skip
    out["bf16_speedup"] = out["no"]["seconds_per_step"] / out["bf16"]["seconds_per_step"]
    out["stored_kv_speedup"] = out["bf16"]["seconds_per_step"] / out["bf16+stored-kv"]["seconds_per_step"]
    return out


def kv_projection(repeats: int = 5) -> dict:
    """Recompute the frozen cross-attention K/V of a batch of 8 vs gather them from a RAM cache."""
    import torch

    from dama_asr.backbone.loading import load_backbone

    whisper = load_backbone("whisper-base", precision="no").model
    layers = whisper.model.decoder.layers
    frames, d = whisper.config.max_source_positions, whisper.config.d_model
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        projections = [
            (layer.encoder_attn.k_proj.to(dtype), layer.encoder_attn.v_proj.to(dtype)) for layer in layers
        ]
        hidden = torch.randn(8, frames, d, dtype=dtype)  # (B, 1500, D)
        store = [torch.randn(2 * len(layers), frames, d, dtype=dtype) for _ in range(32)]  # per-utterance K/V
        with torch.no_grad():

            def recompute(hidden=hidden, projections=projections):
                return [(k(hidden), v(hidden)) for k, v in projections]

            def gather(store=store):
                picked = [store[i] for i in range(0, 32, 4)]
                return [torch.stack([p[j] for p in picked]) for j in range(2 * len(layers))]

            timings = {}
            for label, fn in (("recompute", recompute), ("gather_from_ram", gather)):
                fn()
                start = time.perf_counter()
                for _ in range(repeats):
                    fn()
                timings[label] = (time.perf_counter() - start) / repeats
        out[name] = {
            **timings,
            "cache_bytes_per_utterance": 2
            * len(layers)
            * frames
            * d
            * torch.tensor([], dtype=dtype).element_size(),
        }
    return out


def transcription(n: int = 32) -> dict:
    from dama_asr.backbone.loading import load_backbone
    from dama_asr.data.audio import SAMPLE_RATE, load_audio
    from dama_asr.data.manifest import read_manifest
    from dama_asr.data.synth import default_synth_dir
    from dama_asr.inference.decoding import DecodingOptions, transcribe

    items = read_manifest(default_synth_dir() / "en" / "test.jsonl")[:n]
    audios = [load_audio(u.audio) for u in items]
    seconds = sum(len(a) for a in audios) / SAMPLE_RATE
    out, texts = {}, {}
    for precision in ("no", "bf16"):
        backbone = load_backbone("whisper-base", precision=precision).ready_for_inference()
        options = DecodingOptions(language="en", batch_size=16)
        transcribe(backbone, audios[:2], options)  # warm-up
        start = time.perf_counter()
        result = transcribe(backbone, audios, options)
        wall = time.perf_counter() - start
        texts[precision] = [t.text for t in result]
        out[precision] = {"seconds": wall, "real_time_factor": wall / seconds}
    same = sum(a == b for a, b in zip(texts["no"], texts["bf16"], strict=True))
    return {**out, "audio_seconds": seconds, "utterances": n, "identical_transcripts": same,
            "rtf_ratio_fp32_over_bf16": out["no"]["real_time_factor"] / out["bf16"]["real_time_factor"]}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--modes", default=",".join(ALL_MODES), help=f"comma-separated, from {', '.join(ALL_MODES)}"
    )
    p.add_argument("--hours", type=float, default=0.5)
    p.add_argument("--recipe-epochs", type=int, default=1)
    p.add_argument("--redo", action="store_true", help="rerun modes already in the results")
    p.add_argument("--out", default=str(HERE / "results.json"))
    args = p.parse_args()
    from dama_asr.allocator import reexec_with_tcmalloc

    # The in-process modes run on the allocator `dama` itself uses (the recipe's child process does not).
    reexec_with_tcmalloc(sys.argv)

    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {"modes": {}}
    results["machine"] = machine()
    results["command"] = "python benchmarks/speed/run.py " + " ".join(sys.argv[1:])
    work = Path(tempfile.mkdtemp(prefix="dama-speed-"))
    manifest = subset("cy", args.hours, work)
    try:
        for mode in args.modes.split(","):
            if mode.removesuffix("-memory") not in ALL_MODES:
                raise SystemExit(f"unknown mode {mode!r}; choose from {', '.join(ALL_MODES)}")
            if mode.endswith("-memory"):  # re-measure the peak of a finished mode (over its first steps)
                base = mode.removesuffix("-memory")
                results["modes"][base]["peak_rss_gib"] = peak_memory_only(base, manifest, work)
                results["modes"][base]["peak_rss_measured"] = (
                    "VmHWM over its first steps (separate short run)"
                )
                out.write_text(json.dumps(results, indent=2) + "\n")
                print(f"{base}: peak {results['modes'][base]['peak_rss_gib']:.2f} GiB", flush=True)
                continue
            if mode in results["modes"] and not args.redo:
                print(f"{mode}: kept from an earlier run", flush=True)
                continue
            print(f"{mode} ...", flush=True)
            if mode == "peak":
                result = matmul_peak()
            elif mode == "step":
                result = cached_step(subset("cy", 0.1, work), work)
            elif mode == "kv":
                result = kv_projection()
            elif mode == "transcribe":
                result = transcription()
            elif mode.startswith("curve-"):
                hours = float(mode.split("-", 1)[1])
                result = {
                    **train_mode("dama-auto", subset("cy", hours, work), work, args.recipe_epochs),
                    "hours": hours,
                }
            else:
                result = train_mode(mode, manifest, work, args.recipe_epochs)
            results["modes"][mode] = {**result, "finished": time.strftime("%Y-%m-%d %H:%M")}
            out.write_text(json.dumps(results, indent=2) + "\n")
            print(json.dumps(result), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
