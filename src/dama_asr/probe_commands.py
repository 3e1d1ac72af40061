"""`dama probe`: layer-wise language-ID probing; parses, calls `dama_asr.probe`, prints."""

from __future__ import annotations

import argparse
import re
from pathlib import Path


def default_out_dir(manifest: str | Path, model: str) -> Path:
    """`<manifest folder>/probe-<manifest stem>-<model>/`."""
    manifest = Path(manifest)
    model_tag = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model).name or model)
    return manifest.parent / f"probe-{manifest.stem}-{model_tag}"


def with_merged_adapter(backbone, adapter: str | Path):
    """The backbone with a `dama train` output folder applied: adapters are merged into the weights, so
    the probe sees a plain Whisper (is the U-shape still there after adaptation?)."""
    from dama_asr.adapters import adapted_backbone

    return adapted_backbone(backbone, adapter, merge=True)


def cmd_char_probe(args: argparse.Namespace, backbone, items) -> None:
    import json

    from dama_asr.atomic import atomic_write_text
    from dama_asr.probe.chars import CharProbeOptions, plot_char_probe, run_char_probe

    options = CharProbeOptions(seed=args.seed, forward_batch=args.batch_size,
                               max_utterances=args.max_per_language or 0)  # fmt: skip
    result = run_char_probe(backbone, items, options)
    tag = f"{args.model}+{Path(args.adapter).resolve().parent.name}" if args.adapter else args.model
    out = Path(args.out) if args.out else default_out_dir(args.manifest, tag)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "chars_probe.json", json.dumps(result, indent=2, allow_nan=False))
    png = plot_char_probe(result, out / "chars_probe.png")
    print(f"{result['model']}: character CTC probe of the encoder, {result['train_utterances']} training and "
          f"{result['heldout_utterances']} held-out utterances, {result['alphabet_size']} characters")  # fmt: skip
    for row in result["layers"]:
        print(f"  layer {row['layer']:>2}: held-out CER {row['cer']:.1%}")
    print(f"most readable: layer {result['best_layer']}\nresults: {out / 'chars_probe.json'}\nplot: {png}")


def cmd_probe(args: argparse.Namespace) -> None:
    from dama_asr.backbone.loading import load_backbone
    from dama_asr.data.manifest import read_manifest
    from dama_asr.errors import UserError
    from dama_asr.probe import ProbeError, ProbeOptions, plot_probe, run_probe, save_probe

    try:
        options = ProbeOptions(
            folds=args.folds,
            max_per_language=args.max_per_language,
            seed=args.seed,
            layers=args.layers,
            batch_size=args.batch_size,
            prompt=args.prompt,
            fixed_language=args.fixed_language,
            reuse_encoder_outputs=args.encoder_cache,
        )
        items = read_manifest(args.manifest)
        backbone = load_backbone(args.model, device=args.device, precision=args.precision)
        backbone = (
            with_merged_adapter(backbone, args.adapter) if args.adapter else backbone.ready_for_inference()
        )
        if args.task == "chars":
            return cmd_char_probe(args, backbone, items)
        result = run_probe(backbone, items, options)
    except ProbeError as err:
        raise UserError(str(err)) from err
    tag = f"{args.model}+{Path(args.adapter).resolve().parent.name}" if args.adapter else args.model
    out = Path(args.out) if args.out else default_out_dir(args.manifest, tag)
    json_path = save_probe(result, out / "probe.json")
    png_path = plot_probe(result, out / "probe.png")

    counts = ", ".join(f"{lang} {n}" for lang, n in result.languages.items())
    print(
        f"{result.model}: {sum(result.languages.values())} utterances ({counts}); chance {result.chance:.3f}"
    )
    if result.skipped:
        print("skipped: " + ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in result.skipped.items()))
    for name, curve in (("decoder", result.decoder), ("encoder", result.encoder)):
        if curve is None:
            continue
        print(f"{name} accuracy per layer (0 = embeddings), mean ± std over {options.folds} folds:")
        for layer, mean, std in zip(curve.layers, curve.mean, curve.std, strict=True):
            print(f"  layer {layer:>2}: {mean:.3f} ± {std:.3f}")
    s = result.suggestion
    kind = "default" if s.fallback else "suggested"
    print(
        f"{kind} theta1={s.theta1:.3f} theta2={s.theta2:.3f} (l_early={s.l_early}, l_late={s.l_late}, L={s.num_layers})"
    )
    print(f"  {s.reason}")
    print(f"time: {result.seconds['total']:.1f} s (forward {result.seconds['forward']:.1f} s)")
    print(f"results: {json_path}\nplot: {png_path}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe",
        help="layer-wise language-ID probing; suggests DAMA's theta1/theta2",
        description="Teacher-force each utterance, mean-pool every decoder/encoder layer, cross-validate a "
        "linear language-ID classifier per layer; writes probe.json and probe.png.",
    )
    p.add_argument(
        "--model", default="whisper-base", help="built-in name (whisper-base, tiny-random), folder or hub id"
    )
    p.add_argument("--manifest", required=True, help="JSONL manifest with >= 2 languages")
    p.add_argument(
        "--adapter", help="probe the model adapted by a `dama train` output (best/ or final/ folder)"
    )
    p.add_argument("--out", help="output folder (default: next to the manifest)")
    p.add_argument("--folds", type=int, default=5, help="k of the stratified k-fold cross-validation")
    p.add_argument(
        "--max-per-language", type=int, help="use at most N utterances per language (seeded sample)"
    )
    p.add_argument("--seed", type=int, default=0, help="the folds and the --max-per-language sample")
    p.add_argument(
        "--layers", choices=["decoder", "encoder", "both"], default="both", help="which stack to probe"
    )
    p.add_argument("--batch-size", type=int, default=8, help="utterances per forward pass")
    p.add_argument(
        "--prompt",
        choices=["neutral", "fixed", "forced"],
        default="neutral",
        help="decoder prompt: neutral = no language token (default); fixed = --fixed-language for all; "
        "forced = each utterance's own language (leaks the label: for comparison only)",
    )
    p.add_argument(
        "--encoder-cache",
        action="store_true",
        help="with --layers decoder: take encoder outputs from (and add them to) the on-disk encoder cache, "
        "so probing the base model and its frozen-encoder adaptations encodes the audio once",
    )
    p.add_argument("--fixed-language", default="en", help="the language token used by --prompt fixed")
    p.add_argument(
        "--task",
        choices=["lid", "chars"],
        default="lid",
        help="lid: language ID per layer (pooled, k-fold); chars: a linear CTC probe per encoder layer "
        "spelling the transcript (held-out CER; one language is enough; --max-per-language caps the sample)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    from dama_asr.command_args import add_precision_arg

    add_precision_arg(p)
    p.set_defaults(func=cmd_probe)
