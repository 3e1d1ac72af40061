"""`dama plan`: the per-layer adapter table and trainable parameters from a config alone (no weights)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from dama_asr.adapter_args import adapter_config_from_args, add_adapter_args

if TYPE_CHECKING:
    from transformers import WhisperConfig


def model_config(name_or_path: str) -> WhisperConfig:
    """Config of a standard size, the tiny test model, or a local folder: never loads weights."""
    from transformers import WhisperConfig  # imported here: it costs `dama --help` seconds

    from dama_asr.backbone.configs import KNOWN_SIZES, known_config
    from dama_asr.backbone.loading import BackboneError

    if name_or_path == "tiny-random":
        from dama_asr.backbone.tiny import TINY_DIMS, tiny_whisper_config

        return tiny_whisper_config(**TINY_DIMS)
    if (Path(name_or_path) / "config.json").is_file():
        return WhisperConfig.from_pretrained(name_or_path)
    if name_or_path.split("/")[-1] in KNOWN_SIZES:
        return known_config(name_or_path)
    raise BackboneError(
        f"no config for {name_or_path!r}: use a standard size ({', '.join(KNOWN_SIZES)}), tiny-random, or a local folder"
    )


def methods_table() -> str:
    """Every registered method, one line each: name, family, what it is."""
    from dama_asr.adapters.registry import all_methods

    specs = all_methods()
    width = max(len(s.name) for s in specs)
    return "\n".join(f"{s.name:<{width}}  [{s.family}]  {s.summary}" for s in specs)


def cmd_plan(args: argparse.Namespace) -> None:
    from dama_asr.adapters import plan_modules, plan_table, trainable_parameters

    if args.list_methods:
        print(methods_table())
        return
    config = model_config(args.model)
    cfg = adapter_config_from_args(args)
    if args.json:
        rows = [row.to_dict() for row in plan_modules(config, cfg)]
        print(
            json.dumps(
                {
                    "adapter": cfg.to_dict(),
                    "trainable_parameters": trainable_parameters(config, cfg),
                    "modules": rows,
                },
                indent=2,
                allow_nan=False,
            )
        )
        return
    print(
        f"{args.model}: {config.decoder_layers} decoder layers, d_model {config.d_model}; method {cfg.method}"
    )
    print(plan_table(config, cfg))
    if args.compare_lora:
        from dama_asr.adapters import AdapterConfig

        # The reference is plain LoRA by definition of the flag, on the same targets.
        reference = AdapterConfig(
            method="lora", r=args.compare_lora, targets=cfg.targets, encoder=cfg.encoder
        )
        lora = trainable_parameters(config, reference)
        ours = trainable_parameters(config, cfg)
        print(
            f"uniform LoRA r={args.compare_lora}: {lora:,} trainable parameters; {cfg.method} uses {ours / lora:.1%} of that"
        )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="per-layer adapter plan and trainable parameters, without weights")
    p.add_argument(
        "--model",
        default="whisper-base",
        help="standard size (whisper-tiny..whisper-large-v3, openai/...), tiny-random or a local folder",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--list-methods", action="store_true", help="list the adapter methods and exit")
    p.add_argument(
        "--compare-lora", type=int, default=64, metavar="R", help="also count uniform LoRA at rank R (0: off)"
    )
    add_adapter_args(p)
    p.set_defaults(func=cmd_plan)
