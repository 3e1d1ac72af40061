"""`dama expand SET --language xx --train M --out OUT --init random|warm|moe`: add a language to an
adapter set, LoRA-Whisper's language expansion (`dama_asr.train.expansion`), and print what it did."""

from __future__ import annotations

import argparse
import json

from dama_asr.train_commands import FLAG_FIELDS

# The library's INITS and GATES (dama_asr.train.expansion), spelled out: importing it needs torch.
INITS = ("random", "warm", "moe")
GATES = ("similarity", "learned")


def cmd_expand(args: argparse.Namespace) -> None:
    from dama_asr.adapters.sets import AdapterSet
    from dama_asr.train.expansion import ExpansionOptions, expand_set, set_folder_of
    from dama_asr.train_commands import config_from_args

    options = ExpansionOptions(
        init=args.init, top_k=args.top_k, gates=args.gates, replace=args.replace, force=args.force, resume=args.resume,
        similarity_utterances=args.similarity_utterances, min_similarity_utterances=args.min_utterances,
    )  # fmt: skip
    if args.model is None:  # the set's own base
        args.model = AdapterSet.load(set_folder_of(args.adapter_set)).base_model or "whisper-base"
    report = None if args.json else lambda found: print(_start_lines(found), flush=True)
    summary = expand_set(args.adapter_set, args.language, config_from_args(args), args.out, options, report)
    print(json.dumps(summary, indent=2, allow_nan=False) if args.json else _result_lines(summary))


def _start_lines(found: dict) -> str:
    similarity = found["similarity"]
    lines = [
        f"similarity of {found['language']}'s audio to the set's languages (mean language-ID probability "
        f"of the base Whisper over {len(similarity['utterances'])} utterances):"
    ]
    lines += [f"  {row['language']}  {row['probability']:.3f}" for row in similarity["ranking"]]
    start, init = found["start"], found["init"]
    if init == "random":
        lines.append("start: random (a fresh LoRA)")
    elif init == "warm":
        lines.append(f"start: warm, from {start['members'][0]}'s LoRA")
    else:
        gates = ", ".join(f"{code} {g:.3f}" for code, g in zip(start["members"], start["gates"], strict=True))
        how = "learned from the similarity" if found["gates"] == "learned" else "fixed at the similarity"
        lines.append(f"start: moe over {gates} (gates {how})")
    return "\n".join(lines)


def _result_lines(summary: dict) -> str:
    run = summary["run"]
    wer = "n/a" if run.get("best_dev_wer") is None else f"{run['best_dev_wer']:.1%}"
    return "\n".join([
        f"{summary['language']}: dev WER {wer}, {run['steps']} steps, {run['trainable_parameters']:,} "
        f"trainable parameters -> {summary['member']}",
        f"expanded set: {', '.join(summary['languages'])} -> {summary['experts']}",
    ])  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:
    from dama_asr.command_args import add_precision_arg

    p = sub.add_parser(
        "expand",
        help="add a language to an adapter set: a new LoRA started at random, from the most similar "
        "language's LoRA (warm) or beside the top-k similar ones (moe); the set's members stay as they are",
        description="Similarity = the base Whisper's mean language-ID probabilities over the new "
        "language's audio. Writes OUT/similarity.json, OUT/run/ (the training run), OUT/experts/ (the "
        "expanded set: the original members byte for byte, plus the new one) and OUT/expansion.json.",
    )
    p.set_defaults(**dict.fromkeys(FLAG_FIELDS))  # the `dama train` flags not offered here stay unset
    p.add_argument("adapter_set", metavar="SET", help="the adapter set (or a run folder holding experts/)")
    p.add_argument("--language", required=True, help="the new language (a Whisper code or name)")
    p.add_argument("--train", required=True, help="training manifest of the new language (JSONL)")
    p.add_argument("--dev", help="its dev manifest: WER each epoch, the best epoch's LoRA joins the set")
    p.add_argument(
        "--out", required=True, help="the expansion's folder (must not exist, unless --force or --resume)"
    )
    p.add_argument("--init", choices=INITS, default="warm", help="how the new LoRA starts")
    p.add_argument("--top-k", type=int, default=2, help="moe: the similar languages' LoRAs mixed in")
    p.add_argument("--gates", choices=GATES, default="similarity",
                   help="moe: the members' weights, fixed at their similarity or learned from there")  # fmt: skip
    p.add_argument("--similarity-utterances", type=int, default=100,
                   help="the most utterances the similarity is estimated on")  # fmt: skip
    p.add_argument("--min-utterances", type=int, default=5,
                   help="refuse with fewer readable utterances for the similarity")  # fmt: skip
    p.add_argument("--replace", action="store_true", help="retrain a language the set already has")
    p.add_argument("--force", action="store_true", help="start over an OUT an earlier `dama expand` wrote")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted expansion in OUT (the same one asked again) from its last checkpoint")  # fmt: skip
    g = p.add_argument_group("training (as in `dama train`; the adapter is the set's members')")
    g.add_argument("--model", help="the base (default: the set's own)")
    g.add_argument("--recipe", help="YAML recipe for the training run; flags and --set override it")
    g.add_argument("--epochs", type=int, help="passes over the training set")
    g.add_argument("--batch-size", type=int, help="per process")
    g.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step")
    g.add_argument("--lr", type=float, help="peak learning rate")
    g.add_argument("--max-dev", type=int, help="dev utterances scored each epoch (0 = all)")
    g.add_argument("--patience", type=int, help="early stopping after N epochs without dev improvement")
    g.add_argument("--seed", type=int, help="initialisation, batch order, dev and similarity samples")
    g.add_argument("--device", help="auto, cpu, cuda")
    add_precision_arg(g, default=None)
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, help="show the progress bar")
    g.add_argument("--set", action="append", metavar="KEY=VALUE", help="any training config field")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_expand)
