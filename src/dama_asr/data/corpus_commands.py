"""`dama data synth` and `dama data czech-fillets`: parse arguments, call the corpus builders, print."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("-")
    try:
        return (int(low), int(high)) if sep else (int(low), int(low))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH such as 130-200, got {text!r}") from err


def cmd_synth(args: argparse.Namespace) -> None:
    from dama_asr.data.sentences.filters import SYNTH_LANGUAGES
    from dama_asr.data.synth import SynthConfig, build_synth_corpus, default_synth_dir, hours_table
    from dama_asr.errors import UserError
    from dama_asr.languages import normalise_language

    languages = tuple(normalise_language(code) for code in args.languages.split(",") if code.strip())
    unsupported = [code for code in languages if code not in SYNTH_LANGUAGES]
    if unsupported:
        raise UserError(
            f"no sentence source/script check for {', '.join(unsupported)}; supported: {', '.join(sorted(SYNTH_LANGUAGES))}"
        )
    try:
        config = SynthConfig(languages=languages, hours=args.hours, dev_minutes=args.dev_minutes,
                             test_minutes=args.test_minutes, seed=args.seed, speed=args.speed,
                             pitch=args.pitch, snr_db=args.snr_db)  # fmt: skip
    except ValueError as err:
        raise UserError(str(err)) from err
    out = Path(args.out) if args.out else default_synth_dir()
    start = time.monotonic()
    corpus = build_synth_corpus(config, out, workers=args.workers)
    print(hours_table(corpus))
    print(f"built in {time.monotonic() - start:.0f} s; manifests: {out}/<language>/{{train,dev,test}}.jsonl")


def cmd_czech_fillets(args: argparse.Namespace) -> None:
    from dama_asr.data.czech_fillets import build_czech_fillets, default_fillets_dir
    from dama_asr.data.synth import hours_table

    out = Path(args.out) if args.out else default_fillets_dir()
    start = time.monotonic()
    report = build_czech_fillets(out, seed=args.seed)
    print(report.summary())
    print(hours_table({"cs": report.splits}))
    print(f"built in {time.monotonic() - start:.0f} s; manifests: {out}/{{train,dev,test}}.jsonl")


def register(data_sub: argparse._SubParsersAction) -> None:
    p = data_sub.add_parser(
        "synth", help="synthetic speech (espeak-ng) from sentences in Debian translation packages"
    )
    p.add_argument("--languages", required=True, help="comma-separated Whisper codes, e.g. cy,lt,ka")
    p.add_argument("--hours", type=float, default=0.5, help="training hours per language (default 0.5)")
    p.add_argument("--dev-minutes", type=float, default=10.0)
    p.add_argument("--test-minutes", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speed", type=_range, default=(130, 200), help="words per minute, LOW-HIGH (80-450)")
    p.add_argument("--pitch", type=_range, default=(35, 65), help="espeak-ng pitch, LOW-HIGH (0-99)")
    p.add_argument("--snr-db", type=float, help="add white noise at this SNR (default: clean)")
    p.add_argument("--workers", type=int, help="parallel espeak-ng processes (default: CPU count)")
    p.add_argument("--out", help="output folder (default: $DAMA_HOME/corpora/synth)")
    p.set_defaults(func=cmd_synth)

    p = data_sub.add_parser("czech-fillets", help="real Czech speech from the Debian fillets-ng game data")
    p.add_argument("--seed", type=int, default=0, help="seed of the sentence-disjoint split")
    p.add_argument("--out", help="output folder (default: $DAMA_HOME/corpora/czech-fillets)")
    p.set_defaults(func=cmd_czech_fillets)
