"""`dama <verb>`: parse arguments, call the library, print. No logic of its own."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

from dama_asr.errors import DamaError, describe_os_error

# Modules that add verbs of their own: each has `register(subparsers)`.
COMMAND_MODULES = (
    "dama_asr.data.commands",
    "dama_asr.probe_commands",
    "dama_asr.plan_commands",
    "dama_asr.train_commands",
    "dama_asr.study_commands",
    "dama_asr.cache_commands",
)


class UserError(DamaError):
    """A user error raised by the CLI layer itself (kept as a name: commands import it from here)."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's help ends with its default, except where there is none to show (None: unset,
    False: an off switch) or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text.lower():
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """The parser of `dama` and, through `add_subparsers` (which builds sub-parsers of the parent's
    class), of every verb under it, so each `--help` shows defaults."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def _load(args: argparse.Namespace):
    """The backbone, with a saved adapter (or fully fine-tuned model) from --adapter applied."""
    from dama_asr.backbone.loading import load_backbone

    backbone = load_backbone(args.model, device=args.device, precision=args.precision)
    if not getattr(args, "adapter", None):
        return backbone.ready_for_inference()
    from dama_asr.adapters import adapted_backbone

    return adapted_backbone(backbone, args.adapter)


def cmd_transcribe(args: argparse.Namespace) -> None:
    from dama_asr.data.audio import AudioError, load_audio
    from dama_asr.transcribe import DecodingOptions, transcribe

    audios, names, failed = [], [], 0
    for path in args.audio:
        try:
            audios.append(load_audio(path, max_seconds=None))  # over 30 s: long-form decoding
            names.append(path)
        except AudioError as err:
            failed += 1
            print(f"skipped: {err}", file=sys.stderr)
    if not audios:
        raise UserError(f"none of the {failed} audio file(s) could be read")
    backbone = _load(args)
    options = DecodingOptions(
        language=args.language, beam_size=args.beam_size, batch_size=args.batch_size, task=args.task
    )
    for name, tr in zip(names, transcribe(backbone, audios, options), strict=True):
        if args.json:
            print(
                json.dumps(
                    {
                        "audio": name,
                        "language": tr.language,
                        "text": tr.text,
                        "suspicious": tr.suspicious,
                        "suspicious_reasons": list(tr.suspicious_reasons),
                    },
                    ensure_ascii=False,
                    allow_nan=False,
                )
            )
        else:
            flag = f"  [suspicious: {', '.join(tr.suspicious_reasons)}]" if tr.suspicious else ""
            print(f"{name}\t[{tr.language}]\t{tr.text}{flag}")
    if failed:
        print(f"{failed} file(s) skipped (see above)", file=sys.stderr)


def cmd_eval(args: argparse.Namespace) -> None:
    from dama_asr.data.manifest import read_manifest
    from dama_asr.evaluate import evaluate_items, markdown_table, parse_max_skipped, write_result
    from dama_asr.transcribe import DecodingOptions

    parse_max_skipped(args.max_skipped)  # a typo fails before the model loads
    items = read_manifest(args.manifest)
    if args.limit:
        items = items[: args.limit]
    backbone = _load(args)
    options = DecodingOptions(beam_size=args.beam_size, batch_size=args.batch_size)
    result = evaluate_items(
        backbone,
        items,
        options,
        force_language=not args.detect_language,
        reuse_encoder_outputs=args.encoder_cache,
        max_skipped=args.max_skipped,
        manifest=args.manifest,
    )
    print(markdown_table(result))
    numbers = result["number_words"]
    if numbers["digits_kept"]:
        kept = ", ".join(numbers["digits_kept"])
        print(f"lenient WER: numbers left as digits in {kept} (num2words has no such language)")
    print(f"precision: {result['precision']} ({'float32' if result['precision'] == 'no' else 'autocast'})")
    skipped, total = result["skipped"], result["items_total"]
    scored = total - skipped["total"]
    print(f"skipped {skipped['total']} item(s) of {total} ({skipped['fraction']:.1%}); scored {scored}")
    for reason, count in skipped["counts"].items():
        print(f"  {reason}: {count}, e.g. {skipped['examples'][reason][0]}")
    if result["long_form"]["utterances"]:
        stalled = result["long_form"]["stalled"]
        note = f", {stalled} of them in fixed 30 s windows (long-form stalled)" if stalled else ""
        print(f"{result['long_form']['utterances']} clip(s) longer than 30 s decoded long-form{note}")
    print("worst utterances (normalised WER):")
    for u in result["worst"]:
        print(f"  {u['id']} WER {u['wer']:.0%}\n    REF: {u['reference']}\n    HYP: {u['hypothesis']}")
    out = Path(args.out) if args.out else Path(args.manifest).with_suffix(".eval.json")
    print(f"results: {write_result(result, out)} (+ .md)")


def cmd_demo(args: argparse.Namespace) -> None:
    from dama_asr.demo import run_demo

    run_demo(
        Path(args.out) if args.out else None, hours=args.hours, epochs=args.epochs, precision=args.precision
    )


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="whisper-base",
        help="built-in name (whisper-base, tiny-random), local folder or hub id",
    )
    p.add_argument(
        "--adapter", help="a folder written by `dama train` (best/, final/): peft adapter or full model"
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


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="dama", description="Depth-aware adaptation of Whisper to low-resource languages.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show library logs")
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("transcribe", help="transcribe audio files, one line per file")
    p.add_argument("audio", nargs="+")
    p.add_argument("--language", help="force a language (Whisper code such as cy); default: detect")
    p.add_argument(
        "--task", default="transcribe", choices=["transcribe", "translate"], help="translate: into English"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    _add_model_args(p)
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("eval", help="WER/CER of a model on a manifest, per language")
    p.add_argument("--manifest", required=True, help="JSONL manifest of the utterances to score")
    p.add_argument("--out", help="result JSON path (default: next to the manifest)")
    p.add_argument("--limit", type=int, help="only the first N utterances")
    p.add_argument("--detect-language", action="store_true", help="do not force the manifest's language")
    p.add_argument(
        "--max-skipped",
        default="0",
        metavar="N|P%",
        help="items that may be skipped (empty reference, unreadable audio) as a count or a percentage; "
        "default 0: any skipped item is an error, as it would leave the WER's denominator",
    )
    p.add_argument(
        "--encoder-cache",
        action="store_true",
        help="reuse (and fill) the on-disk encoder-output cache: much faster when a frozen-encoder model "
        "is scored on the same audio again (float16 outputs, so results can differ very slightly)",
    )
    _add_model_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "demo", help="end to end on the embedded default: corpora, probe, DAMA vs LoRA, report"
    )
    p.add_argument("--out", help="output folder (default: $DAMA_HOME/demo)")
    p.add_argument("--hours", type=float, default=0.15, help="Welsh training audio")
    p.add_argument("--epochs", type=int, default=3, help="training epochs of each method")
    add_precision_arg(p)
    p.set_defaults(func=cmd_demo)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        import transformers

        transformers.logging.set_verbosity_error()
    try:
        args.func(args)
    except DamaError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        message = describe_os_error(err)
        if message is None:
            raise  # not something the user can act on: keep the traceback for the bug report
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is kept (rerun the same command to resume)", file=sys.stderr)
        return 130
    return 0


def entry() -> int:
    """The `dama` console script: on tcmalloc where the machine has it (see `dama_asr.allocator`)."""
    from dama_asr.allocator import reexec_with_tcmalloc

    reexec_with_tcmalloc(["-m", "dama_asr.cli", *sys.argv[1:]])
    return main()


if __name__ == "__main__":
    sys.exit(entry())
