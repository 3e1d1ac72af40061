"""`dama demo`: the embedded Whisper-base transcribing and scoring synthetic speech, offline."""

from __future__ import annotations

from pathlib import Path

from dama_asr.backbone.loading import load_backbone
from dama_asr.data.espeak import synthesize
from dama_asr.data.manifest import Utterance, write_manifest
from dama_asr.evaluate import evaluate_items, markdown_table, write_result
from dama_asr.paths import dama_home
from dama_asr.transcribe import DecodingOptions

# English checks that the model works; Welsh shows the low-resource gap the toolkit is for.
DEMO_SENTENCES = {
    "en": [
        "The quick brown fox jumps over the lazy dog.",
        "It was a bright cold day in April.",
        "Please call Stella and ask her to bring these things with her from the store.",
    ],
    "cy": [
        "Mae hi'n braf heddiw.",
        "Rydw i'n hoffi darllen llyfrau yn y llyfrgell.",
        "Ble mae'r orsaf drenau agosaf?",
    ],
}


def build_demo_clips(folder: Path) -> Path:
    items = []
    for language, sentences in DEMO_SENTENCES.items():
        for i, text in enumerate(sentences):
            audio = synthesize(text, folder / "audio" / f"{language}_{i}.wav", voice=language)
            items.append(
                Utterance(
                    id=f"{language}_{i}", audio=str(audio), text=text, language=language, source="espeak-ng"
                )
            )
    return write_manifest(folder / "manifest.jsonl", items)


def run_demo(out_dir: Path | None = None, model: str = "whisper-base") -> dict:
    out_dir = out_dir or dama_home() / "demo"
    manifest = build_demo_clips(out_dir)
    print(f"demo clips: {manifest}")
    backbone = load_backbone(model)
    from dama_asr.data.manifest import read_manifest

    result = evaluate_items(backbone, read_manifest(manifest), DecodingOptions(batch_size=4))
    for u in result["utterances"]:
        print(f"[{u['language']}] REF: {u['reference']}\n     HYP: {u['hypothesis']}   (WER {u['wer']:.0%})")
    print(markdown_table(result))
    path = write_result(result, out_dir / "eval.json")
    print(f"results: {path}")
    return result
