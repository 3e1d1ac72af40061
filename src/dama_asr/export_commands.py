"""`dama export ADAPTER_OR_SET --format hf|peft|ct2 --out DIR`: parse, call `export_adapter`, print."""

from __future__ import annotations

import argparse
import sys

from dama_asr.export.formats import DEFAULT_QUANTIZATION, FORMATS, QUANTIZATIONS


def cmd_export(args: argparse.Namespace) -> None:
    from dama_asr.export import export_adapter

    summary = export_adapter(
        args.source,
        args.out,
        args.format,
        model=args.model,
        language=args.language,
        quantization=args.quantization,
        results=args.results,
        force=args.force,
        check_base_name=not args.no_base_check,
    )
    for note in summary["notes"]:
        print(f"note: {note}", file=sys.stderr)
    quantized = f" ({summary['quantization']})" if summary["quantization"] else ""
    print(f"exported {summary['source']} as {summary['format']}{quantized} -> {summary['out']}")
    for code, record in summary["members"].items():
        where = f"{record['folder']}/" if summary["is_set"] else "."
        language = f"{code} (forced)" if code and summary["format"] != "peft" else (code or "not forced")
        check = record.get("merge_check")
        merged = (
            f"; merge check: max logit difference {check['max_abs_diff']:.2g} (limit {check['limit']:.2g})"
            if check
            else ""
        )
        print(f"  {where} {record['method'] or 'peft'}, language {language}{merged}")
    if summary["is_set"]:
        print(f"  index: {summary['out']}/export_index.json")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export an adapter or adapter set as a merged transformers, PEFT or CTranslate2 model",
        description="Export a `dama train` output folder (best/, final/) or an adapter set (one model per "
        "language, DIR/<lang>/ plus export_index.json). Every export carries a model card (README.md with "
        "Hub model-index results). A MoLE is refused: export its experts (DIR/experts).",
    )
    p.add_argument(
        "source", metavar="ADAPTER_OR_SET", help="a `dama train` output folder or an adapter set folder"
    )
    p.add_argument("--model", default="whisper-base", help="the base model the adapter was trained on "
                   "(built-in name, local folder or hub id); refused when it is not that model")  # fmt: skip
    p.add_argument("--format", required=True, choices=FORMATS,
                   help="hf: merged transformers folder (forced language); peft: plain PEFT adapter; "
                   "ct2: CTranslate2 for faster-whisper")  # fmt: skip
    p.add_argument("--out", required=True, help="output folder (refused if it exists, unless --force)")
    p.add_argument("--language", help="with a set: export this member only; with one adapter: the language "
                   "to force (default: the one it was trained on)")  # fmt: skip
    p.add_argument("--quantization", choices=QUANTIZATIONS,
                   help=f"ct2 only: weight type (default {DEFAULT_QUANTIZATION}; faster-whisper can still "
                   "run a float32 model with compute_type=int8)")  # fmt: skip
    p.add_argument("--results", metavar="EVAL_JSON",
                   help="a `dama eval` result JSON: its test WER/CER go into the model card")  # fmt: skip
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--no-base-check", action="store_true",
                   help="a single adapter records its base by name only: skip that comparison (a set's "
                   "weight fingerprint is always checked)")  # fmt: skip
    p.set_defaults(func=cmd_export)
