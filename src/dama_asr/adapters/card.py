"""What a saved adapter says about itself to others: a portable base-model name and a model card.

peft records the folder the base weights were read from (for the embedded model an absolute path
under $DAMA_HOME) and writes a blank model-card template. A folder copied to another machine, or
uploaded to the hub, should instead name the base model by its hub id and describe what it is; the
local path stays in our own dama_adapter.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dama_asr.backbone.loading import EMBEDDED

if TYPE_CHECKING:
    from torch import nn

    from dama_asr.adapters.config import AdapterConfig
    from dama_asr.adapters.registry import MethodSpec

# The embedded model is OpenAI's Whisper base (converted from a CTranslate2 copy, same weights).
EMBEDDED_HUB_ID = "openai/whisper-base"
# card keys with their own row; anything else the caller passes is listed after them as given.
CARD_KEYS = ("language", "dataset", "train_hours", "dev_wer", "test_wer")


def _embedded_dir() -> Path:
    from dama_asr.backbone.embedded import embedded_model_dir

    return embedded_model_dir()


def _same_folder(a: str, b: Path) -> bool:
    try:
        return bool(a) and Path(a).expanduser().resolve() == b.resolve()
    except OSError:
        return False


def portable_base_name(base_model: str, local_path: str) -> str:
    """The hub id for the embedded model (by name or by its folder), else the user's own string."""
    if base_model == EMBEDDED or _same_folder(local_path, _embedded_dir()):
        return EMBEDDED_HUB_ID
    return base_model or local_path


def local_base_record(whisper: nn.Module) -> dict:
    """Where this machine's base weights came from: the folder transformers read, and for the embedded
    model its conversion marker (which conversion of which source package)."""
    path = str(getattr(whisper, "name_or_path", "") or "")
    record: dict[str, Any] = {"path": path}
    if _same_folder(path, _embedded_dir()):
        from dama_asr.backbone.embedded import MARKER

        try:
            record["embedded"] = json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record["embedded"] = None
    return record


def _percent(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else str(value)


def _rows(card: dict) -> list[tuple[str, str]]:
    labels = {"language": "language", "dataset": "training data", "train_hours": "training audio",
              "dev_wer": "dev WER", "test_wer": "test WER"}  # fmt: skip
    rows = []
    for key in CARD_KEYS:
        value = card.get(key)
        if value is None:
            continue
        if key.endswith("_wer"):
            value = _percent(value)
        elif key == "train_hours":
            value = f"{value:g} h" if isinstance(value, (int, float)) else str(value)
        rows.append((labels[key], str(value)))
    rows += [(str(k), str(v)) for k, v in card.items() if k not in CARD_KEYS and v is not None]
    return rows


def _usage(spec: MethodSpec, base: str) -> str:
    if spec.saves_full_model:
        return (
            "```python\nfrom transformers import WhisperForConditionalGeneration\n\n"
            "model = WhisperForConditionalGeneration.from_pretrained(folder)  # folder: this directory\n```"
        )
    return (
        "```python\nfrom peft import PeftModel\nfrom transformers import WhisperForConditionalGeneration\n\n"
        f"base = WhisperForConditionalGeneration.from_pretrained({json.dumps(base)})\n"
        "model = PeftModel.from_pretrained(base, folder)  # folder: this directory\n```"
    )


def model_card(
    spec: MethodSpec, cfg: AdapterConfig, base: str, trainable_parameters: int, card: dict | None = None
) -> str:
    """README.md: hub front matter, what the adapter is, what the caller knows of its data and scores.

    card values: language (a code), dataset, train_hours, dev_wer / test_wer as fractions (0.25 = 25%),
    and any other key, listed as given. Unknown facts are left out, never filled with placeholders.
    """
    card = dict(card or {})
    language = card.get("language")
    front: dict[str, Any] = {"base_model": base} if base else {}
    front["library_name"] = "transformers" if spec.saves_full_model else "peft"
    front["pipeline_tag"] = "automatic-speech-recognition"
    if language:
        front["language"] = [str(language)]
    front["tags"] = ["whisper", "dama-asr", spec.name]
    title = f"{spec.label} of" if spec.saves_full_model else f"{spec.label} adapter for"
    title += f" {base or 'Whisper'}" + (f" ({language})" if language else "")
    rows = [("base model", base or "not recorded"), ("method", f"{spec.label} (`{spec.name}`)"),
            ("trainable parameters", f"{trainable_parameters:,}"),
            ("encoder", "adapted" if cfg.adapts_encoder else "frozen")] + _rows(card)  # fmt: skip
    table = "\n".join(["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])
    parts = [
        "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---",
        f"# {title}",
        spec.summary,
        table,
        "The adapter's full configuration is in `dama_adapter.json` (`adapter_config`); the per-layer "
        "ranks it resolved to are under `resolved`.",
        "## Use",
        _usage(spec, base),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"
