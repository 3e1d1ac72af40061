"""`dama transcribe AUDIO...` and `dama eval --manifest F`: decode, score, print."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dama_asr.command_args import add_model_args, load_for_args
from dama_asr.errors import UserError


def cmd_transcribe(args: argparse.Namespace) -> None:
    from dama_asr.data.audio import AudioError, load_audio
    from dama_asr.inference.decoding import DecodingOptions, transcribe

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
    backbone = load_for_args(args)
    options = DecodingOptions(
        language=args.language, beam_size=args.beam_size, batch_size=args.batch_size, task=args.task
    )
    from dama_asr.adapters.mole import mole_of

    if mole_of(backbone.model) is not None:
        from dama_asr.inference.mole_decoding import transcribe_mole

        if not args.language:
            print(
                "note: no --language: the MoLE's router picks each file's expert and language",
                file=sys.stderr,
            )
        given = [args.language] * len(audios) if args.language else None
        transcripts = transcribe_mole(backbone, audios, given, options)
    elif backbone.routes_by_language:
        from dama_asr.inference.routing import set_languages, transcribe_detected, transcribe_routed

        if args.language:
            transcripts = transcribe_routed(backbone, audios, [args.language] * len(audios), options)
        else:
            held = ", ".join(set_languages(backbone.model))
            note = "note: no --language: each file goes to the adapter of the language Whisper detects"
            print(f"{note} among the set's ({held})", file=sys.stderr)
            transcripts = transcribe_detected(backbone, audios, options)
    else:
        transcripts = transcribe(backbone, audios, options)
    for name, tr in zip(names, transcripts, strict=True):
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
    p = sub.add_parser("transcribe", help="transcribe audio files, one line per file")
    p.add_argument("audio", nargs="+")
    p.add_argument(
        "--language",
        help="force a language (Whisper code such as cy); default: detect (with --adapter-set: among the "
        "set's languages, and route each file to the detected language's adapter)",
    )
    p.add_argument(
        "--task", default="transcribe", choices=["transcribe", "translate"], help="translate: into English"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
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
