"""`dama tune`: search learning rate and adapter size on the dev split, write the chosen recipe."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _base_from_args(args: argparse.Namespace) -> dict:
    from dama_asr.train_commands import config_from_args
    from dama_asr.train_systems import needs_system_overrides
    from dama_asr.tune.search import TuneError

    if needs_system_overrides(args.method):
        raise TuneError(
            f"dama tune searches one adapter per run; --method {args.method} trains several. Tune the "
            "expert recipe with --method lora on one language, then train the system with it"
        )
    # Every trial's config: the recipe, then the flags; checked once here, so that a mistake in it is
    # reported before any trial trains.
    args.out = str(Path(args.out) / "trials" / "base")
    return config_from_args(args).to_dict()


def format_record(record: dict) -> str:
    lines = [f"dama tune: {record['search']} search, {len(record['trials'])} trials ({record['status']})"]
    for t in record["trials"]:
        wer = "n/a" if t["dev_wer"] is None else f"{t['dev_wer']:.1%}"
        mark = "  <- chosen" if t["name"] == record["chosen"] else ("  (pruned)" if t.get("pruned") else "")
        settings = ", ".join(f"{k}={v}" for k, v in t["settings"].items())
        lines.append(f"  {settings}: dev WER {wer} (best epoch {t['best_epoch']} of {t['epochs_run']}){mark}")
    return "\n".join(lines)


def cmd_tune(args: argparse.Namespace) -> None:
    from dama_asr.tune.search import RECIPE, run_search
    from dama_asr.tune.space import default_axes, parse_axis

    out = Path(args.out)
    base = _base_from_args(args)
    axes = [parse_axis(a) for a in args.axis] if args.axis else default_axes(base["adapter"]["method"])
    record = run_search(base, axes, out, search=args.search, max_trials=args.max_trials,
                        prune_after=args.prune_after, prune_margin=args.prune_margin)  # fmt: skip
    print(json.dumps(record, indent=2, allow_nan=False) if args.json else format_record(record))
    if not args.json:
        print(f"recipe: {out / RECIPE}  (dama train --recipe {out / RECIPE} --train ... --dev ... --out RUN)")


def register(sub: argparse._SubParsersAction) -> None:
    from dama_asr.adapter_args import add_adapter_args
    from dama_asr.command_args import add_precision_arg
    from dama_asr.train_commands import FLAG_FIELDS
    from dama_asr.tune.search import SEARCHES

    p = sub.add_parser(
        "tune",
        help="choose learning rate and adapter size on the dev split; writes the chosen recipe",
        description="Every trial is a `dama train` run (converged: plateau schedule, early stopping) in "
        "OUT/trials/<settings>/; a rerun reuses finished trials and resumes an unfinished one. Without "
        "--axis: the learning rate, then the rank (DAMA: r_high/r_low), a factor ~3 apart. The test split "
        "is never read: a --dev with items marked split 'test' is refused.",
    )
    p.add_argument("--recipe", help="YAML recipe every trial starts from (flags and --set override it)")
    p.add_argument("--model", help="whisper-base, tiny-random, a local folder or a hub id")
    p.add_argument("--train", required=True, help="training manifest (JSONL)")
    p.add_argument("--dev", required=True, help="dev manifest the trials are compared on")
    p.add_argument("--out", required=True, help="search folder: tune.json, recipe.yaml, trials/")
    add_adapter_args(p, method_default=None)
    p.add_argument(
        "--axis",
        action="append",
        metavar="FIELD[,FIELD]=V|V...",
        help="a searched axis, e.g. optim.lr=3e-4|1e-3|3e-3 or adapter.r_high,adapter.r_low=16,4|32,8 "
        "(repeat for several; searched in the order given)",
    )
    p.add_argument("--search", choices=SEARCHES, default="coordinate",
                   help="coordinate: one axis at a time, the others at their best so far; grid: every combination")  # fmt: skip
    p.add_argument(
        "--max-trials", type=int, default=0, help="refuse to train more trials than this (0 = no cap)"
    )
    p.add_argument(
        "--prune-after", type=int, default=0, metavar="N",
        help="from epoch N on, stop a trial whose best dev WER so far is more than --prune-margin above "
        "the finished trials' median at the same epoch (the median stopping rule; 0 = off, the default). "
        "Saves most of a slow row's search; a slow-starting learning rate can be cut, so keep N >= 3",
    )  # fmt: skip
    p.add_argument("--prune-margin", type=float, default=0.1,
                   help="relative margin of --prune-after (0.1: 10%% above the median)")  # fmt: skip
    p.add_argument("--epochs", type=int, help="cap on each trial's epochs")
    p.add_argument("--batch-size", type=int, help="per process")
    p.add_argument("--max-dev", type=int, help="dev utterances each trial scores per epoch (0 = all)")
    p.add_argument("--patience", type=int, help="stop a trial after N epochs without dev improvement")
    p.add_argument("--seed", type=int, help="initialisation, batch order and dev sample")
    add_precision_arg(p, default=None)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config field of every trial")
    p.add_argument("--json", action="store_true", help="print the search record as JSON")
    # The flags of `dama train` this verb does not offer keep the recipe's values.
    p.set_defaults(func=cmd_tune, **{dest: None for dest in FLAG_FIELDS if dest not in
                                     ("model", "train", "dev", "out", "epochs", "batch_size", "max_dev",
                                      "patience", "seed", "precision")})  # fmt: skip
