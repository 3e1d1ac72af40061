"""A merged transformers Whisper folder converted to CTranslate2 (faster-whisper's format).

CTranslate2 has no adapters, so each language is its own merged model. The converter reads the
suppressed tokens, begin-suppressed tokens, alignment heads and language ids from the generation
config into the output config.json; `check_config` confirms they arrived (a recipe that emptied
suppress_tokens would silently disable suppression after conversion). faster-whisper needs
tokenizer.json beside model.bin (else it downloads one) and preprocessor_config.json (else it
assumes 80 mel bins): both are copied from the merged folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from transformers import GenerationConfig

from dama_asr.export.formats import DEFAULT_QUANTIZATION, QUANTIZATIONS
from dama_asr.export.merged import PREPROCESSOR_CONFIG
from dama_asr.export.source import ExportError

COPY_FILES = ("tokenizer.json", PREPROCESSOR_CONFIG)


def convert_ct2(hf_dir: Path, dest: Path, quantization: str = DEFAULT_QUANTIZATION) -> Path:
    """Convert `hf_dir` (a merged Whisper folder) into `dest`, which must not exist yet."""
    if quantization not in QUANTIZATIONS:
        raise ExportError(f"--quantization: one of {', '.join(QUANTIZATIONS)}, got {quantization!r}")
    if dest.exists():
        raise ExportError(f"{dest}: exists; the converter would replace it")
    from ctranslate2.converters import TransformersConverter

    converter = TransformersConverter(str(hf_dir), copy_files=list(COPY_FILES), load_as_float16=False)
    converter.convert(str(dest), quantization=quantization)
    return dest


def convert_into(hf_dir: Path, folder: Path, quantization: str) -> None:
    """Convert into an existing (empty) folder: the converter only writes a folder it creates."""
    staging = folder / ".ct2"
    convert_ct2(hf_dir, staging, quantization)
    for path in staging.iterdir():
        shutil.move(str(path), folder / path.name)
    staging.rmdir()


def _as_lists(values) -> list:
    return [list(v) if isinstance(v, (list, tuple)) else v for v in (values or [])]


def check_config(folder: Path, generation_config: GenerationConfig) -> dict:
    """The converted config.json carries the generation config's suppressions, alignment heads and
    language ids; returns what it holds (counts), raises naming the first key that differs."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    expected = {
        "suppress_ids": list(generation_config.suppress_tokens or []),
        "suppress_ids_begin": list(generation_config.begin_suppress_tokens or []),
    }
    lang_to_id = getattr(generation_config, "lang_to_id", None)
    if lang_to_id:  # an English-only Whisper has none; the converter then asks the tokenizer
        expected["lang_ids"] = sorted(lang_to_id.values())
    heads = getattr(generation_config, "alignment_heads", None)
    if heads:  # without them the converter takes every head of the decoder's last half
        expected["alignment_heads"] = _as_lists(heads)
    for key, value in expected.items():
        if _as_lists(config.get(key)) != value:
            raise ExportError(
                f"{folder / 'config.json'}: {key} is {config.get(key)!r}, the merged model's generation config "
                f"has {value!r}; the converter dropped it (ctranslate2 version?), nothing written"
            )
    missing = [name for name in ("model.bin", *COPY_FILES) if not (folder / name).is_file()]
    if missing:
        raise ExportError(f"{folder}: the converter wrote no {', '.join(missing)}; nothing written")
    return {
        key: len(config.get(key) or [])
        for key in ("suppress_ids", "suppress_ids_begin", "lang_ids", "alignment_heads")
    }
