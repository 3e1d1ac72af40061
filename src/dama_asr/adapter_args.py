"""Command-line options shared by every verb that builds an adapter (`dama plan`, `dama train`)."""

from __future__ import annotations

import argparse

from dama_asr.adapters.config import AdapterConfig, AdapterConfigError
from dama_asr.adapters.registry import UnknownMethodError, get_method, method_names


def add_adapter_args(
    p: argparse.ArgumentParser, method_default: str | None = "dama", extra_methods: tuple[str, ...] = ()
) -> None:
    """The adapter flags. Every default is None (unset), so a recipe's values survive unset flags;
    `method_default` is None for verbs that read a recipe (`dama train`). `extra_methods`: names the
    verb accepts beyond the registry's adapter methods (`dama train`'s multi-adapter systems)."""
    g = p.add_argument_group("adapter")
    g.add_argument("--method", default=method_default, choices=(*method_names(), *extra_methods))
    g.add_argument(
        "--r",
        type=int,
        default=None,
        help="rank of uniform-rank methods (dama-no-schedule: default = mean DAMA rank; vera: default 256)",
    )
    g.add_argument("--r-high", type=int, default=None, help="DAMA rank at the ends (default 32)")
    g.add_argument("--r-low", type=int, default=None, help="DAMA rank in the middle (default 8)")
    g.add_argument(
        "--theta1", type=float, default=None, help="DAMA early boundary as a fraction of depth (default 0.3)"
    )
    g.add_argument("--theta2", type=float, default=None, help="DAMA late boundary (default 0.7)")
    g.add_argument("--probe", help="probe JSON whose suggested theta1/theta2 set DAMA's boundaries")
    g.add_argument("--alpha-policy", choices=["ratio", "fixed"], default=None)
    g.add_argument("--alpha-ratio", type=float, default=None, help="alpha = ratio x rank (default 2)")
    g.add_argument(
        "--alpha", type=float, default=None, help="alpha for every layer with --alpha-policy fixed"
    )
    g.add_argument(
        "--targets",
        default=None,
        help="comma-separated: all, qv, no-cross-kv, or names like self_attn.q_proj,fc1",
    )
    g.add_argument(
        "--encoder",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also adapt the encoder (its outputs can then no longer be cached)",
    )
    g.add_argument(
        "--encoder-from",
        type=int,
        default=None,
        metavar="K",
        help="with --encoder, adapt encoder layers K.. only (1-based; default 1 = all); the frozen "
        "layers below are run once per utterance and cached, not every step",
    )
    g.add_argument(
        "--encoder-schedule",
        choices=["uniform", "rising", "dama"],
        default=None,
        help="with --encoder and DAMA: the encoder's ranks by depth: uniform r_low (default), rising from "
        "r_low to r_high, or the decoder's depth-aware schedule (SVD basis and freezing in the middle)",
    )
    g.add_argument("--lora-dropout", type=float, default=None)


def _probe_thetas(path: str) -> dict:
    from dama_asr.probe import ProbeError, load_probe

    try:
        theta1, theta2 = load_probe(path).thetas
    except ProbeError as err:
        raise AdapterConfigError(f"--probe: {err}") from err
    return {"theta1": theta1, "theta2": theta2}


def adapter_overrides_from_args(args: argparse.Namespace, uniform_rank: int | None = None) -> dict:
    """Only the options the user gave (AdapterConfig field -> value), so recipes and defaults fill the
    rest. `uniform_rank`: the rank given to uniform LoRA baselines when --r is not set."""
    names = {
        "method": "method", "r": "r", "r_high": "r_high", "r_low": "r_low", "theta1": "theta1",
        "theta2": "theta2", "alpha_policy": "alpha_policy", "alpha_ratio": "alpha_ratio", "alpha": "alpha",
        "targets": "targets", "encoder": "encoder", "encoder_from": "encoder_from", "encoder_schedule": "encoder_schedule", "lora_dropout": "dropout",
    }  # fmt: skip
    out = {field: getattr(args, arg) for arg, field in names.items() if getattr(args, arg, None) is not None}
    if getattr(args, "probe", None):
        out |= _probe_thetas(args.probe)
    if uniform_rank and "r" not in out and _requires_rank(out.get("method")):
        out["r"] = uniform_rank
    return out


def _requires_rank(method: str | None) -> bool:
    try:
        return method is not None and get_method(method).requires_rank
    except UnknownMethodError:
        return False  # AdapterConfig names the unknown method


def adapter_config_from_args(args: argparse.Namespace) -> AdapterConfig:
    """For verbs without a recipe (`dama plan`): uniform baselines default to rank 32."""
    return AdapterConfig.from_dict(adapter_overrides_from_args(args, uniform_rank=32))
