"""Zero-shot WER/CER of a backbone on every built corpus's whole test split.

Run: python benchmarks/zero-shot/run.py [--model whisper-base] [--batch-size 8]
Corpora are the ones built in $DAMA_HOME by `dama data synth` and `dama data czech-fillets`. Each corpus's
full result (every hypothesis) lands in evals/<corpus>.json as soon as it is done, so an interrupted run
resumes where it stopped; results.json holds the summary that docs/RESULTS.md is generated from.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def built_test_splits() -> dict[str, Path]:
    from dama_asr.data.czech_fillets import default_fillets_dir
    from dama_asr.data.synth import default_synth_dir

    splits = {p.parent.name: p for p in sorted(default_synth_dir().glob("*/test.jsonl"))}
    czech = default_fillets_dir() / "test.jsonl"
    if czech.exists():
        splits["czech-fillets"] = czech
    return splits


def summary_row(name: str, result: dict, seconds: float) -> dict:
    overall = result["by_language"]["all"]
    return {
        "corpus": name,
        "language": next(k for k in result["by_language"] if k != "all"),
        "utterances": overall["utterances"],
        "audio_minutes": round(result["audio_seconds"] / 60, 2),
        "suspicious": overall["suspicious"],
        **{
            f"{norm}_{m}": round(overall[norm][m], 4)
            for norm in ("raw", "whisper", "script_safe")
            for m in ("wer", "cer")
        },
        "decode_seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="whisper-base")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--only", default="", help="comma-separated corpus names (default: every built one)")
    parser.add_argument(
        "--note", default="", help="conditions worth recording (e.g. other load on the machine)"
    )
    args = parser.parse_args()

    from dama_asr.backbone.loading import load_backbone
    from dama_asr.data.manifest import read_manifest
    from dama_asr.evaluate import evaluate_items, write_result
    from dama_asr.inference.decoding import DecodingOptions

    splits = built_test_splits()
    if args.only:
        splits = {k: v for k, v in splits.items() if k in args.only.split(",")}
    if not splits:
        sys.exit("no built corpus found: run `dama data synth` / `dama data czech-fillets` first")
    backbone = load_backbone(args.model)
    options = DecodingOptions(batch_size=args.batch_size)
    evals = HERE / "evals"
    summary_path = HERE / "results.json"
    previous = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    rows = {r["corpus"]: r for r in previous.get("rows", [])}
    for name, manifest in splits.items():
        out = evals / f"{name}.json"
        if out.exists() and name in rows:
            print(f"{name}: done before, kept")
            continue
        print(f"{name}: {manifest}", flush=True)
        start = time.perf_counter()
        result = evaluate_items(backbone, read_manifest(manifest), options)
        rows[name] = summary_row(name, result, time.perf_counter() - start)
        write_result(result, out)
        summary = {
            "command": "python benchmarks/zero-shot/run.py",
            "model": args.model,
            "decoding": f"greedy, language forced, batch {args.batch_size}",
            "machine": f"{platform.machine()} {platform.system()}, {platform.processor() or 'cpu'}",
            "note": args.note or previous.get("note", ""),
            "rows": sorted(rows.values(), key=lambda r: r["corpus"]),
        }
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        r = rows[name]
        print(
            f"{name}: WER {r['whisper_wer']:.1%} CER {r['whisper_cer']:.1%} in {r['decode_seconds']:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
