"""Known Whisper architectures, so plans and parameter counts work without any weights.

The dimensions are OpenAI's published ones (`whisper/__init__.py` model cards); building a model
from them on the meta device costs no memory, which is how `dama plan` handles large-v2 on a laptop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration

# Token ids shared by every multilingual Whisper tokenizer (large-v3 shifts the language block by one).
EOT = 50257
SOT = 50258
TRANSLATE = 50358
TRANSCRIBE = 50359
PREV_SOT = 50361
NO_TIMESTAMPS = 50363


@dataclass(frozen=True)
class WhisperDims:
    d_model: int
    layers: int
    heads: int
    num_mel_bins: int = 80
    vocab_size: int = 51865

    def to_config(self) -> WhisperConfig:
        eot, sot = EOT, SOT
        return WhisperConfig(
            vocab_size=self.vocab_size,
            num_mel_bins=self.num_mel_bins,
            d_model=self.d_model,
            encoder_layers=self.layers,
            decoder_layers=self.layers,
            encoder_attention_heads=self.heads,
            decoder_attention_heads=self.heads,
            encoder_ffn_dim=4 * self.d_model,
            decoder_ffn_dim=4 * self.d_model,
            max_source_positions=1500,
            max_target_positions=448,
            bos_token_id=eot,
            eos_token_id=eot,
            pad_token_id=eot,
            decoder_start_token_id=sot,
            begin_suppress_tokens=[220, eot],
            tie_word_embeddings=True,
        )


KNOWN_SIZES: dict[str, WhisperDims] = {
    "whisper-tiny": WhisperDims(384, 4, 6),
    "whisper-base": WhisperDims(512, 6, 8),
    "whisper-small": WhisperDims(768, 12, 12),
    "whisper-medium": WhisperDims(1024, 24, 16),
    "whisper-large-v2": WhisperDims(1280, 32, 20),
    "whisper-large-v3": WhisperDims(1280, 32, 20, num_mel_bins=128, vocab_size=51866),
}


def known_config(name: str) -> WhisperConfig:
    """The transformers config of a standard Whisper size (`whisper-base`, `openai/whisper-large-v2`, ...)."""
    key = name.split("/")[-1]
    if key not in KNOWN_SIZES:
        raise KeyError(f"unknown Whisper size {name!r}; known sizes: {', '.join(KNOWN_SIZES)}")
    return KNOWN_SIZES[key].to_config()


def meta_model(config_or_name: WhisperConfig | str) -> WhisperForConditionalGeneration:
    """A Whisper with the right shapes and no storage (device 'meta'): for planning and counting."""
    config = known_config(config_or_name) if isinstance(config_or_name, str) else config_or_name
    with torch.device("meta"):
        return WhisperForConditionalGeneration(config)
