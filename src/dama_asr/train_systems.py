"""`dama train --method experts | lora-whisper | mole | kd-student`: the language-experts systems as runs.

Each is the ordinary trainer with settings filled in from the experts (user flags and --set still win):
- experts:    one LoRA per language (`train.experts`), rank 64 on encoder and decoder by default
              (the paper's experts; `--no-encoder` keeps the encoder frozen and cached);
- lora-whisper: the same system with LoRA-Whisper's placement (arXiv 2406.06619): one LoRA per
              language, rank 32 on every linear of encoder and decoder by default; `dama expand`
              adds a language to the set it saves;
- mole:       adapter `mole` over `--experts DIR` (l1 merged encoder layers, `--l1`), objective
              `router` (token loss + the router's language-ID loss), language-balanced batches;
- kd-student: one multilingual LoRA (rank 256 by default) on the experts' targets, objective
              `distill` (`--kd layerwise|output`), language-homogeneous batches (one teacher per batch).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dama_asr.errors import UserError

SYSTEMS = {
    "experts": "one LoRA expert per language of the manifest, saved as one adapter set",
    "lora-whisper": "LoRA-Whisper: one LoRA per language on encoder and decoder (rank 32), as one adapter set",
    "kd-student": "one multilingual LoRA distilled from the experts (layer-wise or output-only)",
}
EXPERT_RANK = 64
STUDENT_RANK = 256
# The systems that train one LoRA per language into a set (`train.experts`), and their default ranks.
PER_LANGUAGE_RANKS = {"experts": EXPERT_RANK, "lora-whisper": 32}


def trains_per_language(system: str | None) -> bool:
    """Whether `dama train --method <system>` trains one LoRA per language (`train_experts`)."""
    return system in PER_LANGUAGE_RANKS


def add_system_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "language experts (--method experts, lora-whisper, kd-student, and methods built on experts: mole)"
    )
    g.add_argument("--experts", help="the experts' adapter set (DIR/experts of `--method experts`)")
    g.add_argument(
        "--languages", nargs="+", help="experts, lora-whisper: train only these languages (default: all)"
    )
    g.add_argument("--l1", type=int, help="mole: encoder layers merged (default: half the encoder, "
                   "or all of it when the experts leave the encoder frozen)")  # fmt: skip
    g.add_argument("--router-hidden", type=int, default=256, help="mole: the router MLP's width")
    g.add_argument("--kd", choices=["layerwise", "output"], default="layerwise",
                   help="kd-student: hidden states at every layer + logits, or logits only")  # fmt: skip


def builds_on_experts(method: str | None) -> bool:
    """Whether `method` is a registered adapter method built over saved experts (MoLE)."""
    from dama_asr.adapters.registry import get_method, method_names

    return method in method_names() and get_method(method).builds_on_experts


def needs_system_overrides(method: str | None) -> bool:
    return method in SYSTEMS or builds_on_experts(method)


def _user_set_keys(args: argparse.Namespace) -> set[str]:
    return {pair.partition("=")[0].strip() for pair in (args.set or [])}


def _experts_dir(args: argparse.Namespace) -> Path:
    if not args.experts:
        raise UserError(
            f"--method {args.method} needs --experts DIR (the set `dama train --method experts` saved)"
        )
    folder = Path(args.experts)
    if (folder / "experts" / "adapter_set.json").is_file():  # the experts' run folder was given
        folder = folder / "experts"
    return folder


def _expert_adapter(folder: Path) -> dict:
    """The adapter config the experts were trained with (their dama_adapter.json), {} if unknown."""
    from dama_asr.adapters.sets import AdapterSet

    expert_set = AdapterSet.load(folder)
    meta = folder / expert_set.member(expert_set.languages[0])["folder"] / "dama_adapter.json"
    return json.loads(meta.read_text()).get("adapter_config", {}) if meta.is_file() else {}


def system_overrides(args: argparse.Namespace) -> argparse.Namespace:
    """args with `system` (the method asked for) and `system_overrides` (dotted TrainConfig fields)."""
    args.system = args.method
    given = _user_set_keys(args)
    out: dict = {}
    if trains_per_language(args.method):
        args.r = args.r or PER_LANGUAGE_RANKS[args.method]
        if args.encoder is None:
            args.encoder = True
        if args.method == "lora-whisper" and args.targets is None:
            args.targets = "all"  # the paper's placement: every linear, whatever a recipe says
        args.method = "lora"
    elif args.method == "kd-student":
        folder = _experts_dir(args)
        expert = _expert_adapter(folder)
        args.method = "lora"
        args.r = args.r or STUDENT_RANK
        if args.encoder is None:
            args.encoder = bool(expert.get("encoder", False))
        if args.targets is None and expert.get("targets"):
            args.targets = ",".join(expert["targets"])
        out["objective"] = "distill"
        out["objective_options"] = {"experts": str(folder.resolve()), "kd": args.kd}
        if "sampler" not in given:
            out["sampler"] = "language-homogeneous"
    elif builds_on_experts(args.method):
        from dama_asr.adapters.registry import get_method
        from dama_asr.backbone.loading import load_backbone

        spec = get_method(args.method)
        folder = _experts_dir(args)
        depth = load_backbone(
            args.model or "whisper-base", device="cpu", precision="no"
        ).model.config.encoder_layers
        out["adapter.extra"] = spec.experts_options(
            folder, depth, l1=args.l1, router_hidden=args.router_hidden
        )
        out["objective"] = spec.default_objective
        out["sampler"] = spec.default_sampler
    args.system_overrides = {k: v for k, v in out.items() if k not in given and v is not None}
    return args
