"""`dama train`: parse, build a TrainConfig (recipe < flags), call `dama_asr.train.train`, print the summary."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

# flag dest -> dotted TrainConfig field; flags left unset keep the recipe's (or the default) value.
# The adapter flags are the ones `dama plan` takes (adapter_args.py).
FLAG_FIELDS = {
    "model": "model",
    "train": "train",
    "dev": "dev",
    "out": "output_dir",
    "epochs": "optim.epochs",
    "batch_size": "optim.batch_size",
    "grad_accum": "optim.grad_accum",
    "lr": "optim.lr",
    "schedule": "optim.schedule",
    "max_dev": "eval.max_utterances",
    "patience": "eval.patience",
    "seed": "seed",
    "device": "device",
    "precision": "precision",
    "gradient_checkpointing": "gradient_checkpointing",
    "encoder_cache": "encoder_cache",
    "cross_kv_cache_gib": "cross_kv_cache_gib",
    "stop_after_steps": "stop_after_steps",
    "checkpoint_every": "checkpoint_every",
    "progress": "progress_bar",
    "replay": "replay.train",
    "replay_share": "replay.share",
}


def _parse_set(pairs: list[str]) -> dict[str, Any]:
    import yaml

    from dama_asr.errors import UserError

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UserError(f"--set expects KEY=VALUE (e.g. optim.weight_decay=0.01), got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def config_from_args(args: argparse.Namespace):
    """TrainConfig from a recipe (optional), then the flags given, then --set overrides."""
    from dama_asr.adapter_args import adapter_overrides_from_args
    from dama_asr.train import load_recipe

    overrides = {field: getattr(args, dest) for dest, field in FLAG_FIELDS.items()}
    overrides |= {f"adapter.{k}": v for k, v in adapter_overrides_from_args(args).items()}
    if isinstance(overrides.get("adapter.targets"), str):
        overrides["adapter.targets"] = overrides["adapter.targets"].split(",")
    overrides.update(getattr(args, "system_overrides", {}))  # --method experts/mole/kd-student
    overrides.update(_parse_set(args.set or []))
    return load_recipe(args.recipe, overrides)


def config_defaults() -> dict[str, Any]:
    """TrainConfig's defaults by dotted field name ("eval.patience": 2), read without building one."""
    from dama_asr.train.config import TrainConfig

    def walk(cls: type, prefix: str) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(cls):
            value = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            if dataclasses.is_dataclass(value):
                out |= walk(type(value), f"{prefix}{f.name}.")
            else:
                out[prefix + f.name] = value
        return out

    return walk(TrainConfig, "")


class _HelpWithConfigDefaults(argparse.Action):
    """-h/--help of `dama train`. Its flags default to None so that a recipe's values survive unset
    flags; the help shows TrainConfig's defaults instead, importing it (and torch) only when asked."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        add_config_defaults_to_help(parser)
        parser.print_help()
        parser.exit()


def add_config_defaults_to_help(parser: argparse.ArgumentParser) -> None:
    """Append "(default: X)" from TrainConfig to each flag of FLAG_FIELDS whose help does not say it."""
    defaults = config_defaults()
    for action in parser._actions:
        field = FLAG_FIELDS.get(action.dest)
        # "" (no dev set, no manifest) is an absence, not a value to show.
        if defaults.get(field, "") != "" and action.help and "default" not in action.help.lower():
            action.help += f" (default: {defaults[field]})".replace("%", "%%")


def _epoch_line(h: dict) -> str:
    """Training time (with the encoder cache it built) and dev scoring time, apart: a cold cache or a
    large dev set would otherwise hide in, or vanish from, the epoch's seconds."""
    wer = "n/a" if h["dev_wer"] is None else f"{h['dev_wer']:.1%}"
    loss = "n/a" if h["train_loss"] is None else f"{h['train_loss']:.3f}"
    dev = h.get("dev_seconds")  # absent from runs recorded before it was kept
    dev_text = "" if dev is None else f" + {dev:.0f} s dev scoring"
    return (
        f"  epoch {h['epoch']}: train loss {loss}, dev WER {wer}, {h['seconds']:.0f} s training "
        f"({h['cache_seconds']:.0f} s encoder cache){dev_text}, {h['samples_per_second']:.1f} samples/s"
    )


def format_summary(summary: dict) -> str:
    lines = [f"{summary['status']}: {summary['method']} on {summary['model']} -> {summary['run_dir']}"]
    lines += [_epoch_line(h) for h in summary["epochs"]]
    if summary["best_dev_wer"] is not None:
        lines.append(
            f"best dev WER ({summary['dev_wer_normaliser']}): {summary['best_dev_wer']:.1%} "
            f"at epoch {summary['best_epoch']}"
        )
    gib = summary["peak_rss_bytes"] / 2**30
    lines.append(
        f"trainable parameters {summary['trainable_parameters']:,}; peak RSS {gib:.2f} GiB; "
        f"{summary['steps']} steps, global batch {summary['global_batch']}, {summary['processes']} process(es)"
    )
    return "\n".join(lines)


def cmd_train(args: argparse.Namespace) -> None:
    from dama_asr.train import train
    from dama_asr.train_systems import needs_system_overrides, system_overrides, trains_per_language

    # Every error a user can fix is a DamaError: the CLI prints it as one line and exits 2.
    if needs_system_overrides(args.method):
        args = system_overrides(args)
    if trains_per_language(getattr(args, "system", None)):  # experts, lora-whisper
        from dama_asr.train.experts import train_experts

        summary = train_experts(config_from_args(args), languages=args.languages)
        text = _experts_lines(summary, args.system)
        print(json.dumps(summary, indent=2, allow_nan=False) if args.json else text)
        return
    summary = train(config_from_args(args), resume=args.resume)
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return
    if args.json:
        print(json.dumps(summary, indent=2, allow_nan=False))
    else:
        print(format_summary(summary))


def _experts_lines(summary: dict, system: str = "experts") -> str:
    lines = [f"{system}: {', '.join(summary['languages'])} -> {summary['experts']}"]
    for lang, run in summary["runs"].items():
        wer = "n/a" if run.get("best_dev_wer") is None else f"{run['best_dev_wer']:.1%}"
        lines.append(f"  {lang}: dev WER {wer}, {run['steps']} steps, {run['wall_seconds']:.0f} s")
    lines.append(f"trainable parameters, all experts: {summary['trainable_parameters']:,}")
    return "\n".join(lines)


def _bool_flag(p: argparse.ArgumentParser, name: str, help_text: str) -> None:
    p.add_argument(
        f"--{name}", dest=name.replace("-", "_"), action=argparse.BooleanOptionalAction, help=help_text
    )


def register(sub: argparse._SubParsersAction) -> None:
    from dama_asr.adapter_args import add_adapter_args

    p = sub.add_parser(
        "train",
        help="train an adapter (or full fine-tune) on a manifest; works under `accelerate launch`",
        description="Flags override the recipe; unset flags keep the recipe's values or the defaults "
        "shown here (TrainConfig's, one set for every recipe and run; see recipes/).",
        add_help=False,
    )
    p.add_argument("-h", "--help", action=_HelpWithConfigDefaults, help="show this help message and exit")
    p.add_argument("--recipe", help="YAML recipe (see recipes/); flags and --set override it")
    p.add_argument("--model", help="whisper-base, tiny-random, a local folder or a hub id")
    p.add_argument("--train", help="training manifest (JSONL)")
    p.add_argument("--dev", help="dev manifest for WER each epoch and early stopping")
    p.add_argument("--out", help="run folder (config, logs, checkpoints, best/, final/, summary.json)")
    from dama_asr.train_systems import SYSTEMS, add_system_args

    add_adapter_args(p, method_default=None, extra_methods=tuple(SYSTEMS))
    add_system_args(p)
    p.add_argument("--epochs", type=int, help="passes over the training set")
    p.add_argument("--batch-size", type=int, help="per process")
    p.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument(
        "--schedule",
        choices=["plateau", "linear", "cosine", "constant"],
        help="after warmup: plateau (x0.5 after a dev epoch that does not improve, stop after --patience of "
        "them: trains until converged, --epochs is a cap), linear or cosine decay over --epochs, constant",
    )
    p.add_argument(
        "--replay",
        metavar="MANIFEST",
        help="utterances of languages the model already knows (English, say), mixed in against forgetting",
    )
    p.add_argument("--replay-share", type=float, help="replay utterances per training utterance")
    p.add_argument("--max-dev", type=int, help="dev utterances scored each epoch (0 = all)")
    p.add_argument("--patience", type=int, help="early stopping after N epochs without dev improvement")
    p.add_argument("--seed", type=int, help="initialisation, batch order and dev sample")
    p.add_argument("--device", help="auto, cpu, cuda")
    from dama_asr.command_args import add_precision_arg

    add_precision_arg(p, default=None)  # unset keeps the recipe's value (default auto)
    _bool_flag(p, "gradient-checkpointing", "recompute activations in backward to save memory")
    _bool_flag(p, "encoder-cache", "cache encoder outputs when the encoder is frozen")
    p.add_argument(
        "--cross-kv-cache-gib",
        type=float,
        help="keep the frozen cross-attention K/V of training utterances in RAM, up to this many GiB "
        "(18 MB per utterance for whisper-base in bf16; -1 = a quarter of the available RAM; 0 = off)",
    )
    p.add_argument("--stop-after-steps", type=int, help="stop with a checkpoint after N steps (resume later)")
    p.add_argument("--checkpoint-every", type=int, help="optimizer steps between checkpoints (0: per epoch)")
    _bool_flag(p, "progress", "show the progress bar")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="any config field, e.g. optim.weight_decay=0.01"
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last good checkpoint"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_train)
