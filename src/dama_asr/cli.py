"""`dama <verb>`: the parser, the verbs' modules (COMMAND_MODULES) and the error policy. No logic of its own."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from dama_asr.errors import DamaError, describe_os_error

# Modules that add verbs of their own: each has `register(subparsers)`.
COMMAND_MODULES = (
    "dama_asr.data.commands",
    "dama_asr.probe_commands",
    "dama_asr.plan_commands",
    "dama_asr.train_commands",
    "dama_asr.study_commands",
    "dama_asr.cache_commands",
    "dama_asr.decode_commands",
    "dama_asr.demo_commands",
    "dama_asr.export_commands",
    "dama_asr.expand_commands",
    "dama_asr.tune_commands",
)


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


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="dama", description="Depth-aware adaptation of Whisper to low-resource languages.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show library logs")
    sub = parser.add_subparsers(dest="verb", required=True)

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
