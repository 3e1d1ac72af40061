"""Frozen bottom of an adapted encoder: run it once per utterance, not once per step.

When an adapter changes only encoder layers >= k (`AdapterConfig.encoder_from`), everything below
(the two convolutions, the positions and layers 1..k-1) computes the same thing from the same audio in
every epoch. We cache the hidden states after layer k-1 (1500 x D per utterance, in the ordinary
encoder cache under their own fingerprint) and each training step runs only layers k.. and the final
layer norm on them, with gradients. Forward and backward through the bottom are both gone: there is
nothing trainable below layer k, so no gradient flows there anyway.

The step enters through the model's normal forward (so DDP, autocast and every objective see one call):
`install_prefix_entry` lets the encoder accept those hidden states in place of log-mel features. The
two are told apart by shape, unambiguously: features are (B, mel bins, 3000), hidden states
(B, 1500, d_model), and no Whisper has 1500 mel bins. Everything else (evaluation, generation) still
passes features and runs the whole encoder.

Caveat, by design: the cached bottom ran in eval mode, so dropout below layer k is not applied during
training (Whisper's released configs have dropout 0.0; a config with dropout > 0 gets a warning).
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable, Sequence

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from dama_asr.data.manifest import Utterance
from dama_asr.errors import UserError
from dama_asr.features.encoder_cache import encoder_fingerprint
from dama_asr.features.log_mel import log_mel_items
from dama_asr.precision import autocast

log = logging.getLogger(__name__)

_FINGERPRINT_KEYS = ("num_mel_bins", "d_model", "encoder_layers", "encoder_attention_heads",
                     "encoder_ffn_dim", "max_source_positions", "activation_function", "scale_embedding")  # fmt: skip


class PrefixCacheError(UserError):
    """The frozen-bottom cache cannot serve this model or configuration."""


def _bottom(encoder: nn.Module, layers: int) -> nn.Module:
    """The encoder's frozen bottom as one module, with the encoder's own parameter names."""
    return nn.ModuleDict({
        "conv1": encoder.conv1, "conv2": encoder.conv2, "embed_positions": encoder.embed_positions,
        "layers": nn.ModuleList(list(encoder.layers)[:layers]),
    })  # fmt: skip


def prefix_fingerprint(whisper: nn.Module, feature_extractor, precision: str, layers: int) -> str:
    """16 hex digits for 'the hidden states after encoder layer `layers` of this model at `precision`'.

    Only the bottom's weights are hashed: the adapted layers above may change (they train) without
    invalidating it; `layers` is part of the hash, so a cache of another depth is never read.
    """
    config = whisper.config
    described = {k: getattr(config, k, None) for k in _FINGERPRINT_KEYS} | {"prefix_layers": layers}
    encoder = whisper.model.encoder
    return encoder_fingerprint(_bottom(encoder, layers), described, feature_extractor, precision)


def check_prefix(whisper: nn.Module, layers: int) -> None:
    """Refuse what the cached bottom cannot reproduce; warn about what it changes."""
    config = whisper.config
    if not 0 < layers < config.encoder_layers:
        raise PrefixCacheError(
            f"adapter.encoder_from: {layers + 1} leaves no frozen encoder layer below an adapted one "
            f"(the encoder has {config.encoder_layers} layers; choose 2..{config.encoder_layers})"
        )
    if getattr(config, "apply_spec_augment", False):
        raise PrefixCacheError(
            "the model's config has apply_spec_augment: masking the log-mel input cannot be applied to "
            "cached hidden states; pass --no-encoder-cache to run the whole encoder every step"
        )
    if any(p.requires_grad for p in _bottom(whisper.model.encoder, layers).parameters()):
        raise PrefixCacheError(
            "the encoder's bottom layers train, so their outputs cannot be cached; pass --no-encoder-cache"
        )
    if getattr(config, "dropout", 0.0) > 0:
        log.warning("encoder dropout %.2f is not applied below layer %d: those hidden states are cached",
                    config.dropout, layers + 1)  # fmt: skip


def run_bottom(encoder: nn.Module, features: torch.Tensor, layers: int) -> torch.Tensor:
    """Log-mel features (B, mels, 3000) -> hidden states after `layers` layers (B, 1500, D), as
    WhisperEncoder.forward computes them (eval mode: no dropout)."""
    hidden = nn.functional.gelu(encoder.conv1(features))
    hidden = nn.functional.gelu(encoder.conv2(hidden)).permute(0, 2, 1)
    positions = torch.arange(encoder.embed_positions.num_embeddings, device=hidden.device)
    hidden = hidden + encoder.embed_positions(positions)
    for layer in list(encoder.layers)[:layers]:
        hidden = layer(hidden, None)
    return hidden


def run_top(encoder: nn.Module, hidden: torch.Tensor, start: int) -> torch.Tensor:
    """Hidden states after layer `start` -> the encoder's output: layers start+1.. and the layer norm,
    with LayerDrop in training as WhisperEncoder.forward applies it."""
    for layer in list(encoder.layers)[start:]:
        if encoder.training and encoder.layerdrop > 0.0 and torch.rand([]) < encoder.layerdrop:
            continue
        hidden = layer(hidden, None)
    return encoder.layer_norm(hidden)


def prefix_function(
    whisper: nn.Module, feature_extractor, device: torch.device, precision: str, layers: int
) -> Callable[[Sequence[Utterance]], torch.Tensor]:
    """Utterances -> hidden states after encoder layer `layers` (B, 1500, D), without gradients."""
    encoder = whisper.model.encoder
    dtype = next(encoder.parameters()).dtype

    def encode(batch: Sequence[Utterance]) -> torch.Tensor:
        features = log_mel_items(feature_extractor, batch).to(device, dtype=dtype)
        was_training = encoder.training
        encoder.eval()
        with torch.no_grad(), autocast(precision, device):
            hidden = run_bottom(encoder, features, layers)
        encoder.train(was_training)
        if not bool(hidden.abs().amax() <= torch.finfo(torch.float16).max):  # NaN fails this too
            raise PrefixCacheError(  # the cache stores float16; this model's activations do not fit it
                f"encoder layer {layers} outputs exceed float16's range; pass --no-encoder-cache"
            )
        return hidden

    return encode


def install_prefix_entry(encoder: nn.Module, start: int) -> None:
    """Let `encoder(input)` take hidden states after layer `start` (B, 1500, D) as well as features.

    Idempotent; `remove_prefix_entry` undoes it. The instance's own forward is replaced (not the
    class's), so other models are untouched.
    """
    original = getattr(encoder, "_dama_full_forward", None) or encoder.forward
    frames, width = encoder.config.max_source_positions, encoder.config.d_model

    def forward(self, input_features, attention_mask=None, **kwargs):
        if input_features.dim() == 3 and tuple(input_features.shape[1:]) == (frames, width):
            return BaseModelOutput(last_hidden_state=run_top(self, input_features, start))
        return original(input_features, attention_mask=attention_mask, **kwargs)

    encoder._dama_full_forward = original
    encoder.forward = types.MethodType(forward, encoder)


def remove_prefix_entry(encoder: nn.Module) -> None:
    original = encoder.__dict__.pop("_dama_full_forward", None)
    if original is not None:
        encoder.__dict__.pop("forward", None)
