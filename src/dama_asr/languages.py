"""Whisper's language codes and their tokens."""

from __future__ import annotations

from functools import cache

from dama_asr.errors import DamaError

# Cantonese ("yue") exists only from large-v3 on; every other code is known to all multilingual sizes.
LARGE_V3_ONLY = frozenset({"yue"})


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
