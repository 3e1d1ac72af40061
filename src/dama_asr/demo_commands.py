"""`dama demo`: the main job on the embedded default (see dama_asr.demo)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dama_asr.command_args import add_precision_arg


def cmd_demo(args: argparse.Namespace) -> None:
    from dama_asr.demo import run_demo

    run_demo(
        Path(args.out) if args.out else None, hours=args.hours, epochs=args.epochs, precision=args.precision
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="end to end on the embedded default: corpora, probe, DAMA vs LoRA, report"
    )
    p.add_argument("--out", help="output folder (default: $DAMA_HOME/demo)")
    p.add_argument("--hours", type=float, default=0.15, help="Welsh training audio")
    p.add_argument("--epochs", type=int, default=3, help="training epochs of each method")
    add_precision_arg(p)
    p.set_defaults(func=cmd_demo)
