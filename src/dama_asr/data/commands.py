"""`dama data <subverb>`: the data verbs. Each module below adds its sub-verbs with `register(data_subparsers)`."""

from __future__ import annotations

import argparse
import importlib

DATA_COMMAND_MODULES = (
    "dama_asr.data.import_commands",  # check, import (common-voice, fleurs, hf, folder), subset
    "dama_asr.data.corpus_commands",  # synth, czech-fillets
)


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="build, import, check and subset speech corpora")
    data_sub = data.add_subparsers(dest="data_verb", required=True)
    for module_name in DATA_COMMAND_MODULES:
        importlib.import_module(module_name).register(data_sub)
