"""`dama transcribe AUDIO...` and `dama eval --manifest F`: decode, score, print."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dama_asr.command_args import add_model_args, load_for_args
from dama_asr.errors import UserError
from dama_asr.inference.segments import FORMATS, TIMESTAMP_SOURCES  # plain data: no torch at parse time

ENGINES = ("transformers", "ct2", "faster-whisper")


def _transcribe_format(args: argparse.Namespace) -> str:
    """--format, with --json as its old spelling; subtitles of several files need --out-dir."""
    fmt = args.format or ("json" if args.json else "text")
    if args.json and fmt != "json":
        raise UserError(f"--json is --format json; it cannot go with --format {fmt}")
    if fmt in ("srt", "vtt") and not args.out_dir and len(args.audio) > 1:
        raise UserError(f"--format {fmt} of {len(args.audio)} files: give --out-dir (one file per audio)")
    return fmt


def _check_engine(args: argparse.Namespace) -> None:
    """Refuse flag combinations of --engine before any audio is read or model loaded."""
    if args.engine == "transformers":
        if args.ct2_model:
            raise UserError("--ct2-model: give --engine ct2 (or faster-whisper) to decode with it")
        return
    if not args.ct2_model:
        raise UserError(f"--engine {args.engine}: give --ct2-model DIR (a `dama export --format ct2` folder)")
    if args.adapter or args.adapter_set:
        raise UserError(
            f"--engine {args.engine} runs an exported model, not --adapter/--adapter-set: export it with "
            "`dama export --format ct2` and pass the folder as --ct2-model"
        )
    if args.engine == "faster-whisper":
        from dama_asr.inference.ct2_engine import faster_whisper_model_class

        faster_whisper_model_class()  # missing: a one-line error naming the extra to install


def _out_paths(args: argparse.Namespace, fmt: str) -> dict[str, Path]:
    """--out-dir/<audio stem><suffix> per audio; two audio files of one stem are refused."""
    from dama_asr.inference.segments import SUFFIXES

    if not args.out_dir:
        return {}
    paths: dict[str, Path] = {}
    for name in args.audio:
        path = Path(args.out_dir) / (Path(name).stem + SUFFIXES[fmt])
        clash = next((other for other, p in paths.items() if p == path), None)
        if clash is not None:
            raise UserError(f"--out-dir: {clash} and {name} would both write {path}; rename one")
        paths[name] = path
    return paths


def _decode_transformers(args: argparse.Namespace, audios: list, options) -> list:
    from dama_asr.adapters.mole import mole_of
    from dama_asr.inference.decoding import transcribe

    backbone = load_for_args(args)
    if mole_of(backbone.model) is not None:
        from dama_asr.inference.mole_decoding import transcribe_mole

        if not args.language:
            print(
                "note: no --language: the MoLE's router picks each file's expert and language",
                file=sys.stderr,
            )
        given = [args.language] * len(audios) if args.language else None
        return transcribe_mole(backbone, audios, given, options)
    if backbone.routes_by_language:
        from dama_asr.inference.routing import set_languages, transcribe_detected, transcribe_routed

        if args.language:
            return transcribe_routed(backbone, audios, [args.language] * len(audios), options)
        held = ", ".join(set_languages(backbone.model))
        note = "note: no --language: each file goes to the adapter of the language Whisper detects"
        print(f"{note} among the set's ({held})", file=sys.stderr)
        return transcribe_detected(backbone, audios, options)
    return transcribe(backbone, audios, options)


def _decode_exported(args: argparse.Namespace, audios: list, options) -> list:
    import dataclasses

    from dama_asr.inference.ct2_engine import Ct2Whisper, resolve_model_folder, transcribe_faster_whisper

    folder, language = resolve_model_folder(args.ct2_model, args.language)
    options = dataclasses.replace(options, language=language)
    if args.engine == "faster-whisper":
        return transcribe_faster_whisper(folder, audios, options, args.compute_type, args.device)
    return Ct2Whisper(folder, args.compute_type, args.device).transcribe(audios, options)


def cmd_transcribe(args: argparse.Namespace) -> None:
    from dama_asr.data.audio import AudioError, load_audio
    from dama_asr.inference.decoding import DecodingOptions

    fmt = _transcribe_format(args)
    _check_engine(args)
    paths = _out_paths(args, fmt)
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
    options = DecodingOptions(
        language=args.language,
        beam_size=args.beam_size,
        batch_size=args.batch_size,
        task=args.task,
        timestamps=args.timestamps,
    )
    decode = _decode_transformers if args.engine == "transformers" else _decode_exported
    _write_transcripts(args, fmt, paths, names, decode(args, audios, options))
    if failed:
        print(f"{failed} file(s) skipped (see above)", file=sys.stderr)


def _write_transcripts(
    args: argparse.Namespace, fmt: str, paths: dict, names: list, transcripts: list
) -> None:
    from dama_asr.atomic import atomic_write_text
    from dama_asr.inference.segments import MODEL, render

    timed = fmt != "text"
    if timed and args.engine == "ct2":
        print(
            "note: --engine ct2 decodes without timestamp tokens: segments are 30 s windows", file=sys.stderr
        )
    for name, tr in zip(names, transcripts, strict=True):
        if fmt in ("srt", "vtt") and tr.suspicious:
            print(f"note: {name}: suspicious ({', '.join(tr.suspicious_reasons)})", file=sys.stderr)
        if timed and args.engine == "transformers" and args.timestamps == MODEL and tr.timestamps != MODEL:
            print(
                f"note: {name}: no usable timestamps from the model; segments are its windows",
                file=sys.stderr,
            )
        if name in paths:
            atomic_write_text(paths[name], render(fmt, name, tr, standalone=True))
            print(paths[name])
        else:
            sys.stdout.write(render(fmt, name, tr))


def cmd_eval(args: argparse.Namespace) -> None:
    from dama_asr.data.manifest import read_manifest
    from dama_asr.evaluate import evaluate_items, markdown_table, parse_max_skipped, write_result
    from dama_asr.inference.decoding import DecodingOptions

    parse_max_skipped(args.max_skipped)  # a typo fails before the model loads
    items = read_manifest(args.manifest)
    if args.limit:
        items = items[: args.limit]
    backbone = load_for_args(args)
    options = DecodingOptions(beam_size=args.beam_size, batch_size=args.batch_size)
    result = evaluate_items(
        backbone,
        items,
        options,
        force_language=not args.detect_language,
        reuse_encoder_outputs=args.encoder_cache,
        max_skipped=args.max_skipped,
        manifest=args.manifest,
        route=args.route,
    )
    print(markdown_table(result))
    routing = result.get("routing", {})
    if routing.get("accuracy") is not None:
        among = f" among {', '.join(routing['languages'])}" if "languages" in routing else ""
        counts = f"{routing['correct']} of {routing['utterances']}; " if "correct" in routing else ""
        print(
            f"routing: {routing['route']}{among}, language-ID accuracy {routing['accuracy']:.1%} "
            f"({counts}confusion in the result JSON)"
        )
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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transcribe", help="transcribe audio files: text lines, JSON or subtitles (srt, vtt)")
    p.add_argument("audio", nargs="+")
    p.add_argument(
        "--language",
        help="force a language (Whisper code such as cy); default: detect (with --adapter-set: among the "
        "set's languages, and route each file to the detected language's adapter; with --ct2-model: the "
        "language it was exported for, and an exported set needs one, which picks its model)",
    )
    p.add_argument(
        "--task", default="transcribe", choices=["transcribe", "translate"], help="translate: into English"
    )
    p.add_argument(
        "--format",
        choices=list(FORMATS),
        help="text (default): one line per file; json: one object per file (text, language, timed "
        "segments, flags); srt/vtt: subtitles, to stdout for one file, else one file per audio in --out-dir",
    )
    p.add_argument("--json", action="store_true", help="the same as --format json")
    p.add_argument(
        "--out-dir",
        help="write one file per audio here (its name with .txt/.json/.srt/.vtt) instead of stdout",
    )
    p.add_argument(
        "--timestamps",
        default="window",
        choices=list(TIMESTAMP_SOURCES),
        help="how segments are timed. window (default): decoded exactly as `dama eval` decodes (the "
        "<|notimestamps|> prompt adapters are trained with), each segment one 30 s decoding window; "
        "model: clips within 30 s are decoded with Whisper's timestamp tokens for finer cues (the text "
        "may then differ from eval's; a file the model times badly falls back to its windows, and the "
        "JSON says which)",
    )
    p.add_argument(
        "--engine",
        default="transformers",
        choices=list(ENGINES),
        help="transformers: --model with --adapter/--adapter-set; ct2: CTranslate2 on a `dama export "
        "--format ct2` folder (--ct2-model; 30 s windows, segments timed by them); faster-whisper: the same "
        "folder through faster-whisper (pip install 'dama-asr[deploy]')",
    )
    p.add_argument(
        "--ct2-model",
        metavar="DIR",
        help="a CTranslate2 export (model.bin) or an exported set (export_index.json; needs --language)",
    )
    p.add_argument(
        "--compute-type",
        default="default",
        help="CTranslate2 compute type for --engine ct2/faster-whisper: default (as converted), int8, "
        "int8_float32, float32, ...",
    )
    add_model_args(p)
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("eval", help="WER/CER of a model on a manifest, per language")
    p.add_argument("--manifest", required=True, help="JSONL manifest of the utterances to score")
    p.add_argument("--out", help="result JSON path (default: next to the manifest)")
    p.add_argument("--limit", type=int, help="only the first N utterances")
    p.add_argument("--detect-language", action="store_true", help="do not force the manifest's language")
    p.add_argument(
        "--route",
        default="given",
        choices=["given", "whisper-lid", "router"],
        help="with a MoLE (--adapter MOLE_DIR): given (default) = language-aware, the manifest's "
        "language routes; router = language-agnostic, its router picks the expert and the prompt's "
        "language. With --adapter-set, which adapter decodes each utterance: given (default) = its manifest "
        "language's (a language the set lacks is an error); whisper-lid = the language the base Whisper "
        "detects among the set's, which also prompts the decoder (an utterance in a language the set "
        "lacks goes to its nearest member, with a warning, and is left out of the LID accuracy). WER is "
        "scored by the manifest language either way",
    )
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
    add_model_args(p)
    p.set_defaults(func=cmd_eval)
