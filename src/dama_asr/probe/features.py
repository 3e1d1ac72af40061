"""Teacher-forced hidden states of every Whisper layer, mean-pooled per utterance.

Decoder: the input is a prompt followed by the transcript's tokens; each layer's hidden states are
averaged over the transcript positions only (never the prompt, never padding). Encoder: each layer's
hidden states are averaged over the frames that hold audio (Whisper pads every input to 30 s).

Which prompt, and why it matters: the decoder is causal, so every transcript position can attend to
the prompt. If the prompt holds the utterance's own language token, every layer can simply copy it and
the probe measures nothing but that copy (`forced`, kept only to show the leak). The default,
`neutral`, is Whisper's own prefix without a language token (<|startoftranscript|><|transcribe|>
<|notimestamps|>, what the tokenizer gives with language=None); `fixed` puts the same language token
in front of every utterance. In both, the prompt is identical for all classes, so whatever the probe
finds comes from the audio (through cross-attention) and the transcript itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutput

from dama_asr.backbone.loading import Backbone
from dama_asr.data.audio import MAX_SECONDS, SAMPLE_RATE
from dama_asr.features.log_mel import log_mel

PROMPTS = ("neutral", "fixed", "forced")

PROMPT_NOTES = {
    "neutral": (
        "prompt <|startoftranscript|><|transcribe|><|notimestamps|> for every utterance (no language "
        "token): identical across classes, so the probe cannot read the label from the prompt"
    ),
    "fixed": (
        "the same language token in every utterance's prompt: identical across classes, so the probe "
        "cannot read the label from the prompt"
    ),
    "forced": (
        "LEAK: each utterance's own language token is in its prompt and the causal decoder attends to "
        "it, so decoder accuracy is trivially high; use only to compare against neutral/fixed"
    ),
}


def prompt_ids(tokenizer, language: str | None) -> list[int]:
    """Whisper's prefix <|startoftranscript|> [<|xx|>] <|transcribe|> <|notimestamps|> as token ids.

    Uses the tokenizer's own prefix logic. `set_prefix_tokens` cannot reset the language to None and
    rewrites the tokenizer's post-processor, so the three attributes it reads are set here and restored.
    """
    saved = (tokenizer.language, tokenizer.task, tokenizer.predict_timestamps)
    try:
        tokenizer.language, tokenizer.task, tokenizer.predict_timestamps = language, "transcribe", False
        return list(tokenizer.prefix_tokens)
    finally:
        tokenizer.language, tokenizer.task, tokenizer.predict_timestamps = saved


def transcript_ids(tokenizer, text: str, max_tokens: int) -> list[int]:
    """The transcript's tokens as Whisper emits them (with the leading space), at most `max_tokens`."""
    return tokenizer.encode(" " + text.strip(), add_special_tokens=False)[:max_tokens]


@dataclass(frozen=True)
class ProbeInput:
    """One utterance ready for the forward pass."""

    audio: np.ndarray  # (T,) float32 at 16 kHz
    prompt: tuple[int, ...]
    text: tuple[int, ...]


@dataclass
class LayerFeatures:
    """Pooled features: decoder/encoder arrays of shape (L+1, N, D); index 0 is the embedding output."""

    decoder: np.ndarray | None
    encoder: np.ndarray | None


def encoder_frames(num_samples: int, encoder_positions: int) -> int:
    """How many of the encoder's output frames hold audio (Whisper base: 50 per second of 1500)."""
    samples_per_frame = MAX_SECONDS * SAMPLE_RATE / encoder_positions
    return int(min(encoder_positions, max(1, math.ceil(num_samples / samples_per_frame))))


def _masked_mean(hidden: Sequence[torch.Tensor], mask: torch.Tensor) -> np.ndarray:
    """hidden: L+1 tensors (B, T, D); mask (B, T) of 0/1 -> (L+1, B, D) float32."""
    weights = mask.float().unsqueeze(-1)  # (B, T, 1)
    counts = weights.sum(dim=1)  # (B, 1)
    # Sums over up to 1500 frames: in float32 even when the forward ran in bf16.
    pooled = [(h.float() * weights).sum(dim=1) / counts for h in hidden]  # L+1 x (B, D)
    return torch.stack(pooled).float().cpu().numpy()


def _forward_batch(
    backbone: Backbone,
    batch: Sequence[ProbeInput],
    decoder: bool,
    encoder: bool,
    encoder_last: torch.Tensor | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    model, processor = backbone.model, backbone.processor
    dtype = next(model.parameters()).dtype
    if encoder_last is not None and not encoder:
        enc_out = BaseModelOutput(last_hidden_state=encoder_last.to(backbone.device, dtype=dtype))
    else:
        features = log_mel(processor.feature_extractor, [item.audio for item in batch])
        features = features.to(backbone.device, dtype=dtype)  # (B, mels, 3000)
        with backbone.autocast():
            enc_out = model.model.encoder(features, output_hidden_states=encoder)
    enc_pooled = None
    if encoder:
        positions = enc_out.last_hidden_state.shape[1]
        frames = torch.zeros(len(batch), positions, device=backbone.device)  # (B, S)
        for row, item in enumerate(batch):
            frames[row, : encoder_frames(len(item.audio), positions)] = 1
        enc_pooled = _masked_mean(enc_out.hidden_states, frames)
    if not decoder:
        return None, enc_pooled

    width = max(len(item.prompt) + len(item.text) for item in batch)
    pad = model.config.pad_token_id
    ids = torch.full((len(batch), width), pad, dtype=torch.long)  # (B, T), right-padded
    attention = torch.zeros(len(batch), width, dtype=torch.long)  # prompt + transcript
    transcript = torch.zeros(len(batch), width)  # the positions pooled: transcript only
    for row, item in enumerate(batch):
        p, n = len(item.prompt), len(item.text)
        ids[row, : p + n] = torch.tensor(item.prompt + item.text)
        attention[row, : p + n] = 1
        transcript[row, p : p + n] = 1
    with backbone.autocast():
        dec_out = model.model.decoder(
            input_ids=ids.to(backbone.device),
            attention_mask=attention.to(backbone.device),
            encoder_hidden_states=enc_out.last_hidden_state,
            output_hidden_states=True,
            use_cache=False,
        )
    return _masked_mean(dec_out.hidden_states, transcript.to(backbone.device)), enc_pooled


def extract_features(
    backbone: Backbone,
    inputs: Sequence[ProbeInput],
    decoder: bool = True,
    encoder: bool = True,
    batch_size: int = 8,
    on_batch: Callable[[int], None] | None = None,
    encoder_outputs: Callable[[Sequence[int]], torch.Tensor] | None = None,
) -> LayerFeatures:
    """Mean-pooled hidden states of every layer for every input, in input order.

    Batches are bucketed by transcript length (every input costs one full 30 s encoder pass anyway,
    so only the decoder's padding can be saved). Runs under no_grad. `encoder_outputs` (positions ->
    (B, frames, D)) replaces the encoder when only decoder layers are probed.
    """
    if not inputs:
        raise ValueError("no inputs to probe")
    if any(not item.text for item in inputs):
        raise ValueError("every input needs at least one transcript token")
    order = sorted(range(len(inputs)), key=lambda i: (len(inputs[i].text), len(inputs[i].audio)))
    dec: np.ndarray | None = None
    enc: np.ndarray | None = None
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            given = encoder_outputs(chunk) if encoder_outputs is not None else None
            d, e = _forward_batch(backbone, [inputs[i] for i in chunk], decoder, encoder, given)
            if d is not None:
                if dec is None:
                    dec = np.zeros((d.shape[0], len(inputs), d.shape[2]), dtype=np.float32)
                dec[:, chunk] = d
            if e is not None:
                if enc is None:
                    enc = np.zeros((e.shape[0], len(inputs), e.shape[2]), dtype=np.float32)
                enc[:, chunk] = e
            if on_batch is not None:
                on_batch(len(chunk))
    return LayerFeatures(decoder=dec, encoder=enc)
