"""`dama data check | import | subset | split`: parse, call the library, print. No logic of its own."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from dama_asr.data.manifest import ManifestError, read_manifest, write_manifest
from dama_asr.data.stats import hours_table
from dama_asr.data.validate import ValidationOptions


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _options(args: argparse.Namespace) -> ValidationOptions:
    return ValidationOptions(decode=not args.no_decode, reject_multichannel=args.reject_multichannel)


def cmd_check(args: argparse.Namespace) -> None:
    from dama_asr.data.validate import validate_manifest
    from dama_asr.languages import model_languages_offline

    found = model_languages_offline(args.model)
    if found.codes is None:
        print(f"note: {found.source}; languages are checked against all of Whisper's codes")
    if args.drop_implausible and not args.out:
        raise ManifestError("--drop-implausible writes the rest to a new manifest: add --out FILE")
    options = replace(_options(args), languages=found.codes, model=args.model)
    report = validate_manifest(args.manifest, options)
    print(report.summary())
    print(hours_table(report.good))
    if args.out:
        kept = report.kept(drop_warned=args.drop_implausible)
        dropped = f", {len(report.good) - len(kept)} implausible dropped" if args.drop_implausible else ""
        print(f"wrote {write_manifest(args.out, kept)} ({len(kept)} good utterances{dropped})")
    if not report.ok:
        raise ManifestError(f"{args.manifest}: {report.errors} item(s) failed validation")


def cmd_import_common_voice(args: argparse.Namespace) -> None:
    from dama_asr.data.importers import import_common_voice

    import_common_voice(args.root, args.out, _csv(args.splits), args.language, _options(args), echo=print)


def cmd_import_fleurs(args: argparse.Namespace) -> None:
    from dama_asr.data.importers import import_fleurs

    languages = _csv(args.language) if args.language else None
    splits = _csv(args.splits) if args.splits else None
    import_fleurs(args.root, args.out, languages, splits, _options(args), echo=print)


def cmd_import_folder(args: argparse.Namespace) -> None:
    from dama_asr.data.importers import import_folder

    import_folder(args.audio_dir, args.transcripts, args.out, args.language, _options(args), echo=print)


def cmd_import_hf(args: argparse.Namespace) -> None:
    from dama_asr.data.importers.hf import import_hf

    import_hf(
        args.path,
        args.out,
        audio_column=args.audio_column,
        text_column=args.text_column,
        language=args.language,
        language_column=args.language_column,
        speaker_column=args.speaker_column,
        splits=_csv(args.splits) if args.splits else None,
        options=_options(args),
        echo=print,
    )


def cmd_subset(args: argparse.Namespace) -> None:
    from dama_asr.data.subset import hour_subset, total_hours

    items = read_manifest(args.manifest)
    if args.split:
        items = [u for u in items if u.split == args.split]
    chosen = hour_subset(items, args.hours, seed=args.seed, per_language=args.per_language)
    print(hours_table(chosen))
    scope = " per language" if args.per_language else ""
    print(
        f"budget {args.hours:g} h{scope}, seed {args.seed}: {total_hours(chosen):.4f} h in {len(chosen)} utterances"
    )
    print(f"wrote {write_manifest(args.out, chosen)}")


def cmd_split(args: argparse.Namespace) -> None:
    from dama_asr.data.subset import overlaps, split_items

    items = read_manifest(args.manifest)
    unit = "hours" if args.hours else "count" if args.by_count else "fraction"
    result = split_items(items, by=args.by, dev=args.dev, test=args.test, seed=args.seed, unit=unit)
    out_dir = Path(args.out_dir)
    for name, chosen in result.splits.items():
        write_manifest(out_dir / f"{name}.jsonl", chosen)
    print(hours_table([u for chosen in result.splits.values() for u in chosen]))
    shared = overlaps(result.splits)
    print(
        f"{result.groups} {args.by} group(s); shared between splits: {len(shared['speaker'])} speaker(s), {len(shared['sentence'])} sentence(s)"
    )
    if result.unknown_speakers:
        print(
            f"note: {result.unknown_speakers} utterance(s) have no speaker id; each was treated as its own speaker"
        )
    print(f"wrote {', '.join(str(out_dir / f'{name}.jsonl') for name in result.splits)}")


def _add_validation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-decode",
        action="store_true",
        help="read audio headers only (faster; misses silence and truncation)",
    )
    p.add_argument(
        "--reject-multichannel", action="store_true", help="reject stereo audio instead of downmixing it"
    )


def register(data_sub: argparse._SubParsersAction) -> None:
    p = data_sub.add_parser("check", help="validate a manifest; exit code 2 when any item fails")
    p.add_argument("manifest")
    p.add_argument("--out", help="also write the good items (durations filled) to this manifest")
    p.add_argument(
        "--drop-implausible",
        action="store_true",
        help="leave out of --out the items warned about as implausible_rate (transcript and audio "
        "lengths do not match)",
    )
    p.add_argument(
        "--model",
        default="whisper-base",
        help="check languages against this model's (a size, hub id or local folder; default whisper-base)",
    )
    _add_validation_args(p)
    p.set_defaults(func=cmd_check)

    p = data_sub.add_parser("import", help="import Common Voice, FLEURS, a folder or a saved HF dataset")
    importers = p.add_subparsers(dest="import_format", required=True)

    q = importers.add_parser(
        "common-voice", help="a Common Voice locale folder (clips/*.mp3 + *.tsv) or release root"
    )
    q.add_argument("root")
    q.add_argument("--out", required=True, help="output folder: manifest.jsonl + train/dev/test.jsonl")
    q.add_argument("--splits", default="train,dev,test", help="TSVs to read, e.g. train,dev,test,validated")
    q.add_argument("--language", help="Whisper code to use instead of the locale's")
    _add_validation_args(q)
    q.set_defaults(func=cmd_import_common_voice)

    q = importers.add_parser("fleurs", help="FLEURS folders: <lang>/audio/<split>/*.wav + <lang>/<split>.tsv")
    q.add_argument("root")
    q.add_argument("--out", required=True)
    q.add_argument("--language", help="Whisper codes or FLEURS tags, comma-separated (default: all found)")
    q.add_argument("--splits", help="default: every split with a TSV")
    _add_validation_args(q)
    q.set_defaults(func=cmd_import_fleurs)

    q = importers.add_parser("folder", help="a folder of audio plus a TSV/CSV of transcripts")
    q.add_argument("audio_dir")
    q.add_argument(
        "--transcripts", required=True, help="TSV/CSV with columns file|path + text|transcript|sentence"
    )
    q.add_argument("--language", help="Whisper code for rows without a language column")
    q.add_argument("--out", required=True)
    _add_validation_args(q)
    q.set_defaults(func=cmd_import_folder)

    q = importers.add_parser("hf", help="a dataset saved with save_to_disk (needs `pip install datasets`)")
    q.add_argument("path")
    q.add_argument("--out", required=True)
    q.add_argument("--audio-column", default="audio")
    q.add_argument("--text-column", help="default: text, sentence, raw_transcription, transcription, ...")
    q.add_argument("--language", help="Whisper code for every row")
    q.add_argument("--language-column", help="default: language, locale or lang when present")
    q.add_argument("--speaker-column", help="default: speaker_id, speaker or client_id when present")
    q.add_argument("--splits", help="dataset splits to import (default: all)")
    _add_validation_args(q)
    q.set_defaults(func=cmd_import_hf)

    p = data_sub.add_parser(
        "subset", help="an hour budget, deterministic by seed; smaller budgets nest in larger"
    )
    p.add_argument("manifest")
    p.add_argument("--hours", type=float, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-language", action="store_true", help="the budget applies to each language")
    p.add_argument("--split", help="draw only from this split (e.g. train)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_subset)

    p = data_sub.add_parser(
        "split",
        help="speaker- and/or sentence-disjoint train/dev/test manifests",
        description="Whole speakers and/or sentences go to test, then dev; the rest is train. "
        "--dev and --test are fractions of the total hours of audio unless --by-count or --hours.",
    )
    p.add_argument("manifest", help="the manifest to split (every item needs a duration, unless --by-count)")
    p.add_argument(
        "--by",
        choices=["speaker", "sentence", "both"],
        default="speaker",
        help="what no two splits may share (default: %(default)s)",
    )
    p.add_argument(
        "--dev",
        type=float,
        default=0.1,
        help="dev share: a fraction of the hours of audio (default: %(default)s)",
    )
    p.add_argument(
        "--test",
        type=float,
        default=0.1,
        help="test share: a fraction of the hours of audio (default: %(default)s)",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--by-count",
        action="store_true",
        help="--dev/--test are fractions of the number of utterances, not of the hours",
    )
    group.add_argument("--hours", action="store_true", help="--dev/--test are hours, not fractions")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="which seeded order of the groups to fill the splits in (default: %(default)s)",
    )
    p.add_argument("--out-dir", required=True, help="folder for train.jsonl, dev.jsonl and test.jsonl")
    p.set_defaults(func=cmd_split)
