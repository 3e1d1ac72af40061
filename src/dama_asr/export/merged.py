"""A saved adapter folded into a plain float32 Whisper, checked, and saved as a transformers folder.

The merge runs in float32 (merging into a quantised or half-precision base loses the update) and is
checked before anything is written: the merged model's logits must equal the adapted model's on a
few random feature frames. The saved generation config forces the adapter's language and task, so a
plain `model.generate(input_features)` transcribes in that language: automatic language detection
is what fine-tuning breaks first (DESIGN.md section 5). Suppressed tokens, begin-suppressed tokens,
alignment heads and the language ids are the base's, kept as they are.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import GenerationConfig, WhisperForConditionalGeneration, WhisperProcessor

from dama_asr.adapters import load_adapted
from dama_asr.adapters.methods import merge_adapter
from dama_asr.atomic import atomic_write_text
from dama_asr.export.source import ExportError, Member, spec_of
from dama_asr.languages import language_token

# The largest |merged - adapted| logit accepted: 1e-4, plus 1e-5 of the largest logit, since float32
# rounding grows with the logits' scale (whisper-base, logits up to ~34: 4e-5 to 5e-5 measured on
# trained LoRA and DAMA adapters; a dropped or mis-scaled adapter moves logits by 1e-2 and more).
MERGE_ATOL = 1e-4
MERGE_RTOL = 1e-5
PREPROCESSOR_CONFIG = "preprocessor_config.json"
TASK = "transcribe"
_CHECK_TOKENS = (400, 401, 402, 403)  # text tokens after the prompt: the check covers a few positions


@dataclass(frozen=True)
class MergeCheck:
    max_abs_diff: float
    max_abs_logit: float
    positions: int

    @property
    def limit(self) -> float:
        return MERGE_ATOL + MERGE_RTOL * self.max_abs_logit

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.limit  # False for a NaN too

    def to_dict(self) -> dict:
        return {"max_abs_diff": self.max_abs_diff, "max_abs_logit": self.max_abs_logit,
                "positions": self.positions, "limit": self.limit}  # fmt: skip


def check_inputs(config, generation_config: GenerationConfig, language: str | None, batch: int = 2):
    """Random log-mel frames (B, mels, 2 * positions) and a forced prompt plus a few text tokens."""
    g = torch.Generator().manual_seed(0)
    features = 0.5 * torch.randn(batch, config.num_mel_bins, 2 * config.max_source_positions, generator=g)
    lang_to_id = getattr(generation_config, "lang_to_id", None) or {}
    lang = lang_to_id.get(language_token(language or "en"))
    task = (getattr(generation_config, "task_to_id", None) or {}).get(TASK)
    prompt = [
        config.decoder_start_token_id,
        lang,
        task,
        getattr(generation_config, "no_timestamps_token_id", None),
    ]
    tokens = [t for t in prompt if t is not None] + list(_CHECK_TOKENS)
    return features, torch.tensor([tokens] * batch)


def _logits(model, features: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_features=features, decoder_input_ids=tokens).logits.float()  # (B, T, V)


def merged_model(
    base: WhisperForConditionalGeneration, member: Member
) -> tuple[WhisperForConditionalGeneration, MergeCheck]:
    """`member`'s adapter on `base` (float32, modified in place), folded in and checked against itself."""
    base = base.float().eval()
    generation_config = copy.deepcopy(base.generation_config)
    adapted = load_adapted(base, member.folder).float().eval()
    features, tokens = check_inputs(base.config, generation_config, member.language)
    expected = _logits(adapted, features, tokens)
    spec = spec_of(member.method)
    merge = spec.merge if spec is not None else merge_adapter
    merged = merge(adapted).float().eval()
    got = _logits(merged, features, tokens)
    check = MergeCheck(float((got - expected).abs().max()), float(expected.abs().max()), int(tokens.shape[1]))
    if not check.passed:
        raise ExportError(
            f"{member.folder}: the merged model's logits differ from the adapted model's by up to "
            f"{check.max_abs_diff:.3g} (limit {check.limit:.2g}); nothing written. The merge of method "
            f"{member.method or 'peft'} is broken here: export --format peft, or report this with the folder"
        )
    merged.generation_config = forced_generation_config(generation_config, member.language)
    return merged, check


def forced_generation_config(generation_config: GenerationConfig, language: str | None) -> GenerationConfig:
    """The base's generation config with `language` (a code, or None: detect) and the task forced.

    An English-only Whisper has no language tokens (no lang_to_id): there is nothing to force."""
    forced = copy.deepcopy(generation_config)
    forced.language = language if getattr(forced, "lang_to_id", None) else None
    forced.task = TASK
    forced.forced_decoder_ids = None  # the prompt comes from language/task (transformers >= 4.37)
    return forced


def save_hf(model: WhisperForConditionalGeneration, processor: WhisperProcessor, folder: Path) -> None:
    """Weights (safetensors), config, generation config, tokenizer.json and both processor files.

    transformers 5 writes the feature extractor into processor_config.json; CTranslate2's converter,
    faster-whisper and older transformers read preprocessor_config.json (else they assume 80 mels).
    """
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    if not (folder / "tokenizer.json").is_file():
        raise ExportError(
            f"{folder}: the processor wrote no tokenizer.json (a slow tokenizer?); load the base with its "
            "fast tokenizer (tokenizer.json) and export again"
        )
    write_preprocessor_config(processor, folder)


def write_preprocessor_config(processor: WhisperProcessor, folder: Path) -> Path:
    extractor = processor.feature_extractor.to_dict()  # without the mel filter bank
    extractor.setdefault("processor_class", type(processor).__name__)
    path = folder / PREPROCESSOR_CONFIG
    atomic_write_text(path, json.dumps(extractor, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return path
