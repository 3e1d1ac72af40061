"""Whisper's language codes and their tokens, and which codes a given model has."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from dama_asr.errors import DamaError

# Cantonese ("yue") exists only from large-v3 on; every other code is known to all multilingual sizes.
LARGE_V3_ONLY = frozenset({"yue"})
# For a code only large-v3 has, the code earlier models have for the same speech: before large-v3,
# Whisper transcribed Cantonese as Chinese ("zh").
_NEAREST_OLDER = {"yue": "zh"}
_BEFORE_V3_SIZES = ("tiny", "base", "small", "medium", "large", "large-v1", "large-v2")


class UnknownLanguageError(DamaError, ValueError):
    pass


@cache
def whisper_languages() -> tuple[dict[str, str], dict[str, str]]:
    """(code -> name, name or alias -> code) from transformers, the source of truth.

    Imported on first use: the module pulls in torch, which would cost `dama --help` seconds.
    """
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    return LANGUAGES, TO_LANGUAGE_CODE


def normalise_language(code_or_name: str, known: set[str] | None = None) -> str:
    """Map 'cy', 'Welsh' or '<|cy|>' to Whisper's code; raise listing valid codes otherwise.

    `known` restricts to the codes a given model has tokens for (its generation config's lang_to_id).
    """
    languages, to_code = whisper_languages()
    key = code_or_name.strip().lower().removeprefix("<|").removesuffix("|>")
    code = key if key in languages else to_code.get(key)
    valid = known if known is not None else set(languages)
    if code is None or code not in valid:
        raise UnknownLanguageError(
            f"unknown language {code_or_name!r}; valid Whisper codes are: {', '.join(sorted(valid))}"
        )
    return code


def language_token(code: str) -> str:
    return f"<|{code}|>"


def model_languages(generation_config) -> set[str]:
    """The language codes a model's generation config has tokens for."""
    lang_to_id = getattr(generation_config, "lang_to_id", None) or {}
    return {token.strip("<|>") for token in lang_to_id}


def nearest_language(code: str, known: Iterable[str] | None = None) -> str | None:
    """A code to use instead of `code` on a model without it (yue -> zh), if `known` has one."""
    alt = _NEAREST_OLDER.get(code)
    if alt is None or (known is not None and alt not in set(known)):
        return None
    return alt


def unsupported_language_message(code: str, known: Iterable[str], model: str) -> str:
    """Why `model` cannot take `code` and what to do instead (a nearer code, another model)."""
    known = set(known)
    message = f"language {code!r} is not one of {model}'s {len(known)} languages"
    if code in LARGE_V3_ONLY:
        message += " (only whisper-large-v3 has it)"
    alt = nearest_language(code, known)
    if alt:
        return message + f"; label it {alt!r} to use {model}, or use a model that has {code!r}"
    return message + f"; use a model that has {code!r}, or relabel or drop the item"


def size_languages(name: str) -> frozenset[str] | None:
    """The codes of a standard OpenAI size (`whisper-base`, `openai/whisper-large-v3`); None for others."""
    key = name.rstrip("/").split("/")[-1].lower()
    if not key.startswith("whisper-"):
        return None
    size = key.removeprefix("whisper-")
    if size.endswith(".en"):
        return frozenset({"en"})
    every = frozenset(whisper_languages()[0])
    if size in _BEFORE_V3_SIZES:
        return every - LARGE_V3_ONLY
    if size.startswith("large-v3"):  # large-v3, large-v3-turbo
        return every
    return None


class ModelLanguagesError(DamaError, ValueError):
    """A model's generation config that cannot be read."""


def generation_config_languages(path: str | Path) -> frozenset[str] | None:
    """The codes of a generation_config.json's `lang_to_id` (plain JSON: reading it runs no code)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLanguagesError(
            f"{path}: not valid JSON ({err}); restore the model folder from its source"
        ) from None
    lang_to_id = data.get("lang_to_id") if isinstance(data, dict) else None
    if not isinstance(lang_to_id, dict) or not lang_to_id:
        return None
    return frozenset(str(token).strip("<|>") for token in lang_to_id)


@dataclass(frozen=True)
class ModelLanguages:
    """The codes a model has tokens for (None: not known offline) and where they were read."""

    model: str
    codes: frozenset[str] | None
    source: str


def model_languages_offline(model: str) -> ModelLanguages:
    """Read a model's languages without loading (or downloading) anything heavy.

    `model` as `--model` takes it: a local transformers folder (its generation_config.json), a hub id
    (its generation_config.json if the hub cache has it), or a standard size such as the embedded
    `whisper-base` (OpenAI's published list). Anything else gives `codes=None`.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        config = path / "generation_config.json"
        codes = generation_config_languages(config) if config.is_file() else None
        if codes:
            return ModelLanguages(model, codes, str(config))
        return ModelLanguages(model, None, f"{path} has no generation_config.json listing languages")
    if "/" in model:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(model, "generation_config.json")
        except ValueError:  # not a valid repo id
            cached = None
        if isinstance(cached, str):
            codes = generation_config_languages(cached)
            if codes:
                return ModelLanguages(model, codes, cached)
    codes = size_languages(model)
    if codes:
        return ModelLanguages(model, codes, "the languages OpenAI published for this size")
    return ModelLanguages(model, None, f"cannot read the languages of {model!r} offline")
