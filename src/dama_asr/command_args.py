"""Arguments that several verbs share: the model to run and the precision to run it in."""

from __future__ import annotations

import argparse

from dama_asr.errors import UserError


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="whisper-base",
        help="built-in name (whisper-base, tiny-random), local folder or hub id",
    )
    p.add_argument(
        "--adapter", help="a folder written by `dama train` (best/, final/): peft adapter or full model"
    )
    p.add_argument(
        "--adapter-set",
        help="a folder of per-language adapters (dama_asr.AdapterSet): each utterance is decoded by its "
        "own language's adapter (eval: the manifest's language, or --route whisper-lid; transcribe: "
        "--language, else the language Whisper detects among the set's)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--batch-size", type=int, default=8, help="utterances decoded together")
    p.add_argument("--beam-size", type=int, default=1, help="1 = greedy")
    add_precision_arg(p)


def add_precision_arg(p: argparse.ArgumentParser, default: str | None = "auto") -> None:
    """--precision, the same for every verb that runs the model (see `dama_asr.precision`)."""
    p.add_argument(
        "--precision",
        default=default,
        choices=["auto", "no", "bf16", "fp16"],
        help="auto (default): bfloat16 autocast where the hardware computes bf16 natively (CUDA with bf16, "
        "x86 CPUs with AMX or AVX512-BF16), float32 elsewhere; no = float32; bf16/fp16 force autocast",
    )


def load_for_args(args: argparse.Namespace):
    """The backbone, with a saved adapter (or fully fine-tuned model) from --adapter applied."""
    from dama_asr.backbone.loading import load_backbone

    backbone = load_backbone(args.model, device=args.device, precision=args.precision)
    if getattr(args, "adapter", None) and getattr(args, "adapter_set", None):
        raise UserError("--adapter and --adapter-set: give one (a set holds one adapter per language)")
    if getattr(args, "adapter_set", None):
        from dama_asr.adapters.sets import adapter_set_backbone

        return adapter_set_backbone(backbone, args.adapter_set)
    if not getattr(args, "adapter", None):
        return backbone.ready_for_inference()
    from dama_asr.adapters import adapted_backbone

    return adapted_backbone(backbone, args.adapter)
