"""Export benchmark: what a user ships (`dama export`) against what they trained, engine by engine, on
one test set, one machine and the same threads, side by side in one run.

    python benchmarks/export/run.py                  # every row; finished rows are kept (resumable)
    python benchmarks/export/run.py --rows ct2-int8-b1 --redo

Needs the language-experts study's adapter set (`dama bench benchmarks/language-experts/config.yaml
--only experts__seed0`) and, for the faster-whisper rows, `pip install -e '.[deploy]'`. The set is
exported once per format (hf: merged float32 transformers folders; ct2: CTranslate2 float32 and int8),
one model per language; every row decodes the same utterances (the first --utterances of each
language's test split), greedy, the language given, <|notimestamps|>:

- dama-<p>-b<B>:           `dama transcribe` on the adapter set itself (adapters unmerged, routed by the
                           given language), precision p (fp32 | bf16 autocast), batch B;
- merged-<p>-b<B>:         the exported merged transformers model, through the same decoding code;
- ct2-<q>-b<B>:            the CTranslate2 export at quantization q, through `dama transcribe --engine ct2`;
- faster-whisper-<q>:      the same folder through faster-whisper's WhisperModel.transcribe (its own
                           features and loop; greedy at temperature 0, no timestamps, no previous-text
                           conditioning, one file at a time as its transcribe runs).
Each row runs in its own process (its peak RSS is that process's VmHWM: Python, the libraries, every
language's model and the decoding), loads each language's model, warms up on two utterances, then times
decoding only. Agreement: the fraction of utterances whose text equals merged-fp32-b1's (the reference:
float32, unbatched). WER/CER are Whisper-normalised, per row over all languages (pooled) and macro.
Results: benchmarks/export/results.json, generated into docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

# name -> (engine, precision or quantization, batch)
ROWS = {
    "merged-fp32-b1": ("merged", "no", 1),  # the reference for agreement
    "merged-fp32-b16": ("merged", "no", 16),
    "merged-bf16-b1": ("merged", "bf16", 1),
    "merged-bf16-b16": ("merged", "bf16", 16),
    "dama-fp32-b16": ("dama", "no", 16),
    "dama-bf16-b16": ("dama", "bf16", 16),
    "ct2-float32-b1": ("ct2", "float32", 1),
    "ct2-float32-b16": ("ct2", "float32", 16),
    "ct2-int8-b1": ("ct2", "int8", 1),
    "ct2-int8-b16": ("ct2", "int8", 16),
    "faster-whisper-float32": ("faster-whisper", "float32", 1),
    "faster-whisper-int8": ("faster-whisper", "int8", 1),
}
REFERENCE = "merged-fp32-b1"


# ---- the worker: one row in its own process ---------------------------------------------------------
def _vmhwm_gib() -> float:
    from dama_asr.memory import proc_kib

    return proc_kib("/proc/self/status", "VmHWM") / 2**20


def _decoders(engine: str, setting: str, batch: int, exports: dict, set_folder: str, model: str):
    """language -> a function from audios to texts, for one row (models loaded here, before timing)."""
    from dama_asr.inference.decoding import DecodingOptions

    options = DecodingOptions(batch_size=batch)
    if engine in ("merged", "dama"):
        from dama_asr.backbone.loading import load_backbone
        from dama_asr.inference.decoding import transcribe

        if engine == "dama":
            from dama_asr.adapters.sets import adapter_set_backbone
            from dama_asr.inference.routing import transcribe_routed

            backbone = adapter_set_backbone(load_backbone(model, precision=setting), set_folder)
            return {lang: (lambda audios, lang=lang: transcribe_routed(backbone, audios, [lang] * len(audios), options))
                    for lang in exports["languages"]}  # fmt: skip
        out = {}
        for lang in exports["languages"]:
            backbone = load_backbone(str(Path(exports["hf"]) / lang), precision=setting).ready_for_inference()
            out[lang] = lambda audios, b=backbone, lang=lang: transcribe(
                b, audios, options, languages=[lang] * len(audios)
            )
        return out
    folder = Path(exports[f"ct2-{setting}"])
    if engine == "ct2":
        from dama_asr.inference.ct2_engine import Ct2Whisper

        models = {lang: Ct2Whisper(folder / lang, compute_type=setting) for lang in exports["languages"]}
        return {lang: (lambda audios, m=m, lang=lang: m.transcribe(audios, options, [lang] * len(audios)))
                for lang, m in models.items()}  # fmt: skip
    import torch
    from faster_whisper import WhisperModel

    def faster(m, lang):
        def run(audios):
            texts = []
            for audio in audios:
                segments, _ = m.transcribe(audio, language=lang, beam_size=1, temperature=0.0, without_timestamps=True,
                                           condition_on_previous_text=False, vad_filter=False)  # fmt: skip
                texts.append(" ".join(s.text.strip() for s in segments).strip())
            return texts

        return run

    return {lang: faster(WhisperModel(str(folder / lang), device="cpu", compute_type=setting,
                                      cpu_threads=torch.get_num_threads()), lang)
            for lang in exports["languages"]}  # fmt: skip


def worker(row: str, spec_path: Path) -> None:
    """Decode every utterance of the spec for `row`; print one JSON line (texts, seconds, peak RSS)."""
    import torch

    from dama_asr.data.audio import load_audio

    spec = json.loads(spec_path.read_text())
    torch.set_num_threads(spec["threads"])
    engine, setting, batch = ROWS[row]
    started = time.perf_counter()
    decoders = _decoders(engine, setting, batch, spec["exports"], spec["set"], spec["model"])
    load_seconds = time.perf_counter() - started
    texts, decode_seconds = {}, 0.0
    for lang, items in spec["items"].items():
        audios = [load_audio(item["audio"]) for item in items]
        decode = decoders[lang]
        decode(audios[:2])  # warm-up: first-call kernel selection and allocations, untimed
        start = time.perf_counter()
        found = decode(audios)
        decode_seconds += time.perf_counter() - start
        for item, out in zip(items, found, strict=True):
            texts[item["id"]] = out if isinstance(out, str) else out.text
    print(json.dumps({"texts": texts, "decode_seconds": decode_seconds, "load_seconds": load_seconds,
                      "peak_rss_gib": _vmhwm_gib()}))  # fmt: skip


# ---- the parent: exports, rows, scores -------------------------------------------------------------
def prepare(args, work: Path) -> dict:
    """The exports (made once, kept in work/) and the test items, as the workers' spec."""
    from dama_asr.bench.experts_study import ExpertsStudyRunner, load_experts_study
    from dama_asr.data.manifest import read_manifest
    from dama_asr.export import export_adapter
    from dama_asr.paths import dama_home

    config = ROOT / "benchmarks" / "language-experts" / "config.yaml"
    study = load_experts_study(config)
    runner = ExpertsStudyRunner(study, config.parent, dama_home() / "bench" / study.name)
    set_folder = runner.work / f"experts__seed{args.seed}" / "experts"
    if not (set_folder / "adapter_set.json").is_file():
        sys.exit(
            f"no adapter set at {set_folder}: run `dama bench {config.relative_to(ROOT)} --only experts__seed{args.seed}`"
        )
    languages = [lang for lang in study.languages if not args.languages or lang in args.languages.split(",")]
    exports = {"languages": languages}
    for name, fmt, quantization in (
        ("hf", "hf", None),
        ("ct2-float32", "ct2", "float32"),
        ("ct2-int8", "ct2", "int8"),
    ):
        dest = work / name
        if not (dest / "export_index.json").is_file():
            start = time.perf_counter()
            export_adapter(set_folder, dest, fmt, model=study.model, quantization=quantization, force=True)
            print(
                f"export {name}: {time.perf_counter() - start:.0f} s for {len(study.languages)} languages",
                flush=True,
            )
        exports[name] = str(dest)
    items = {}
    for lang in languages:
        test = read_manifest(study.languages[lang]["test"])[: args.utterances]
        items[lang] = [
            {"id": u.id, "audio": str(u.audio), "text": u.text, "duration": u.duration} for u in test
        ]
    return {"set": str(set_folder), "model": study.model, "exports": exports, "items": items,
            "threads": args.threads}  # fmt: skip


def machine() -> dict:
    """The speed benchmark's machine record (CPU, threads, bf16 units, torch, date)."""
    import importlib.util

    found = importlib.util.spec_from_file_location("speed_run", ROOT / "benchmarks" / "speed" / "run.py")
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module.machine()


def score(texts: dict, spec: dict, reference: dict | None) -> dict:
    """Corpus WER/CER (Whisper-normalised) per language and pooled, and agreement with `reference`."""
    from dama_asr.scoring import ErrorCounts, char_errors, whisper_basic, word_errors

    by_language, words, chars = {}, ErrorCounts(), ErrorCounts()
    for lang, items in spec["items"].items():
        w, c = ErrorCounts(), ErrorCounts()
        for item in items:
            ref, hyp = whisper_basic(item["text"], lang), whisper_basic(texts[item["id"]], lang)
            w, c = w + word_errors(ref, hyp), c + char_errors(ref, hyp)
        by_language[lang] = {"wer": w.rate, "cer": c.rate}
        words, chars = words + w, chars + c
    out = {"by_language": by_language, "wer": words.rate, "cer": chars.rate,
           "macro_wer": sum(v["wer"] for v in by_language.values()) / len(by_language)}  # fmt: skip
    if reference is not None:
        same = sum(texts[i] == reference[i] for i in reference)
        out["agreement"] = same / len(reference)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", help=f"comma-separated, of: {', '.join(ROWS)} (default: all)")
    parser.add_argument("--redo", action="store_true", help="measure the rows again")
    parser.add_argument("--utterances", type=int, default=25, help="test utterances per language")
    parser.add_argument("--languages", help="comma-separated (default: the set's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="the experts seed whose set is exported")
    parser.add_argument("--out", default=str(HERE / "results.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, Path(args.spec))
    from dama_asr.paths import dama_home

    work = dama_home() / "bench" / "export"
    work.mkdir(parents=True, exist_ok=True)
    spec = prepare(args, work)
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec))
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    if results.get("items") != {k: [i["id"] for i in v] for k, v in spec["items"].items()}:
        results = {}  # another test set: nothing measured before compares
    results |= {"command": "python benchmarks/export/run.py", "machine": machine(), "threads": args.threads,
                "items": {k: [i["id"] for i in v] for k, v in spec["items"].items()},
                "audio_seconds": sum(i["duration"] for v in spec["items"].values() for i in v)}  # fmt: skip
    rows = results.setdefault("rows", {})
    wanted = args.rows.split(",") if args.rows else list(ROWS)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    unknown = [r for r in wanted if r not in ROWS]
    if unknown:
        sys.exit(f"--rows: unknown {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    # The reference first: every other row's agreement is measured against it.
    for row in [REFERENCE] + [r for r in wanted if r != REFERENCE]:
        if row in rows and not (args.redo and row in wanted):
            continue
        if ROWS[row][0] == "faster-whisper":
            try:
                import faster_whisper  # noqa: F401
            except ImportError:
                print(
                    f"{row}: skipped (faster-whisper is not installed: pip install -e '.[deploy]')",
                    flush=True,
                )
                continue
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", row, "--spec", str(spec_path)]
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            sys.exit(f"{row} failed:\n{done.stderr[-3000:]}")
        found = json.loads(done.stdout.strip().splitlines()[-1])
        reference = rows.get(REFERENCE, {}).get("texts") if row != REFERENCE else None
        rows[row] = {"engine": ROWS[row][0], "setting": ROWS[row][1], "batch": ROWS[row][2],
                     "rtf": found["decode_seconds"] / results["audio_seconds"], **found,
                     **score(found["texts"], spec, reference), "measured": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip
        r = rows[row]
        print(
            f"{row}: RTF {r['rtf']:.3f}, WER {r['wer']:.1%}, agreement {r.get('agreement', 1):.0%}, "
            f"peak {r['peak_rss_gib']:.2f} GiB",
            flush=True,
        )
        out.write_text(json.dumps(results, indent=1, ensure_ascii=False, allow_nan=False))
    # Agreement against the reference as it now stands (a --redo of it changes every row's).
    reference = rows.get(REFERENCE, {}).get("texts")
    for row, r in rows.items():
        if row != REFERENCE and reference is not None:
            r |= score(r["texts"], spec, reference)
    out.write_text(json.dumps(results, indent=1, ensure_ascii=False, allow_nan=False))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
