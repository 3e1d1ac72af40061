"""Convert a CTranslate2 Whisper (model.bin + config.json + tokenizer.json) to a transformers folder.

Facts behind the mapping (checked by tests/backbone/test_embedded.py): self-attention `linear_0` is fused q|k|v and
`linear_1` the output; cross-attention `linear_0` is q, `linear_1` fused k|v, `linear_2` the
output; the k part of fused biases is zero because Whisper's k projection has no bias; no query
pre-scaling; the output projection is tied to the token embedding.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

from dama_asr.backbone.configs import NO_TIMESTAMPS, PREV_SOT, TRANSCRIBE, TRANSLATE, WhisperDims
from dama_asr.backbone.ct2_format import CTranslate2Model
from dama_asr.backbone.tokenizer_fix import build_whisper_tokenizer

_NORMS = {
    "self_attention": "self_attn_layer_norm",
    "attention": "encoder_attn_layer_norm",
    "ffn": "final_layer_norm",
}


def _t(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _split(array: np.ndarray, parts: int) -> list[np.ndarray]:
    return np.split(array, parts, axis=0)


# Which projections each CTranslate2 linear packs, in order along the output dimension.
SELF_ATTENTION = (("linear_0", ("q", "k", "v")), ("linear_1", ("out",)))
CROSS_ATTENTION = (("linear_0", ("q",)), ("linear_1", ("k", "v")), ("linear_2", ("out",)))


def _attention(ct2: CTranslate2Model, src: str, dst: str, packing: tuple) -> dict:
    out: dict[str, torch.Tensor] = {}
    for linear_name, projections in packing:
        linear = f"{src}/{linear_name}"
        weights = _split(ct2.get(f"{linear}/weight"), len(projections))
        biases = _split(ct2.get(f"{linear}/bias"), len(projections))
        for proj, w, b in zip(projections, weights, biases, strict=True):
            out[f"{dst}.{proj}_proj.weight"] = _t(w)
            if proj == "k":
                if np.abs(b).max() != 0:
                    raise ValueError(f"{linear}: the k bias is not zero; this is not a Whisper checkpoint")
            else:
                out[f"{dst}.{proj}_proj.bias"] = _t(b)
    return out


def _layer_norm(ct2: CTranslate2Model, src: str, dst: str) -> dict:
    return {f"{dst}.weight": _t(ct2.get(f"{src}/gamma")), f"{dst}.bias": _t(ct2.get(f"{src}/beta"))}


def _ffn(ct2: CTranslate2Model, src: str, dst: str) -> dict:
    out = {}
    for ct2_name, hf_name in (("linear_0", "fc1"), ("linear_1", "fc2")):
        out[f"{dst}.{hf_name}.weight"] = _t(ct2.get(f"{src}/{ct2_name}/weight"))
        out[f"{dst}.{hf_name}.bias"] = _t(ct2.get(f"{src}/{ct2_name}/bias"))
    return out


def _count_layers(ct2: CTranslate2Model, side: str) -> int:
    pattern = re.compile(rf"^{side}/layer_(\d+)/")
    return len({m.group(1) for name in ct2.variables if (m := pattern.match(name))})


def whisper_state_dict(ct2: CTranslate2Model) -> dict[str, torch.Tensor]:
    """transformers `WhisperForConditionalGeneration` state dict (float32) from a CTranslate2 spec."""
    if ct2.spec_name != "WhisperSpec":
        raise ValueError(f"expected a WhisperSpec CTranslate2 model, got {ct2.spec_name!r}")
    sd: dict[str, torch.Tensor] = {}
    enc, dec = "model.encoder", "model.decoder"
    for conv in ("conv1", "conv2"):
        sd[f"{enc}.{conv}.weight"] = _t(ct2.get(f"encoder/{conv}/weight"))
        sd[f"{enc}.{conv}.bias"] = _t(ct2.get(f"encoder/{conv}/bias"))
    sd[f"{enc}.embed_positions.weight"] = _t(ct2.get("encoder/position_encodings/encodings"))
    for i in range(_count_layers(ct2, "encoder")):
        src, dst = f"encoder/layer_{i}", f"{enc}.layers.{i}"
        sd |= _attention(ct2, f"{src}/self_attention", f"{dst}.self_attn", SELF_ATTENTION)
        sd |= _layer_norm(ct2, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
        sd |= _ffn(ct2, f"{src}/ffn", dst)
        sd |= _layer_norm(ct2, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")
    sd |= _layer_norm(ct2, "encoder/layer_norm", f"{enc}.layer_norm")
    sd[f"{dec}.embed_tokens.weight"] = _t(ct2.get("decoder/embeddings/weight"))
    sd[f"{dec}.embed_positions.weight"] = _t(ct2.get("decoder/position_encodings/encodings"))
    for i in range(_count_layers(ct2, "decoder")):
        src, dst = f"decoder/layer_{i}", f"{dec}.layers.{i}"
        sd |= _attention(ct2, f"{src}/self_attention", f"{dst}.self_attn", SELF_ATTENTION)
        sd |= _attention(ct2, f"{src}/attention", f"{dst}.encoder_attn", CROSS_ATTENTION)
        sd |= _ffn(ct2, f"{src}/ffn", dst)
        for block, hf_norm in _NORMS.items():
            sd |= _layer_norm(ct2, f"{src}/{block}/layer_norm", f"{dst}.{hf_norm}")
    sd |= _layer_norm(ct2, "decoder/layer_norm", f"{dec}.layer_norm")
    return sd


def whisper_config_for(ct2: CTranslate2Model) -> WhisperConfig:
    vocab, d_model = ct2.get("decoder/embeddings/weight").shape
    heads = int(ct2.get("encoder/num_heads"))
    n_mels = ct2.get("encoder/conv1/weight").shape[1]
    layers = _count_layers(ct2, "encoder")
    if layers != _count_layers(ct2, "decoder"):
        raise ValueError("encoder and decoder depths differ; not a standard Whisper")
    return WhisperDims(
        int(d_model), layers, heads, num_mel_bins=int(n_mels), vocab_size=int(vocab)
    ).to_config()


def generation_config_for(
    config: WhisperConfig, ct2_config: dict, lang_tokens: dict[int, str]
) -> GenerationConfig:
    """Whisper's generation settings: language/task ids, suppressions, alignment heads, a default task.

    Without `task` transformers 5.x drops `<|transcribe|>` from the prompt and output degenerates.
    """
    lang_ids = ct2_config["lang_ids"]
    lang_ids = json.loads(lang_ids) if isinstance(lang_ids, str) else lang_ids
    suppress = ct2_config["suppress_ids"]
    suppress = json.loads(suppress) if isinstance(suppress, str) else suppress
    return GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
        max_length=config.max_target_positions,
        is_multilingual=True,
        lang_to_id={lang_tokens[i]: i for i in lang_ids},
        task_to_id={"transcribe": TRANSCRIBE, "translate": TRANSLATE},
        task="transcribe",
        no_timestamps_token_id=NO_TIMESTAMPS,
        prev_sot_token_id=PREV_SOT,
        suppress_tokens=list(suppress),
        begin_suppress_tokens=list(ct2_config["suppress_ids_begin"]),
        alignment_heads=[list(h) for h in ct2_config["alignment_heads"]],
        return_timestamps=False,
        max_initial_timestamp_index=50,
    )


def convert_ctranslate2_whisper(
    ct2: CTranslate2Model, ct2_config: dict, tokenizer_json: dict, out_dir: Path
) -> None:
    """Write a complete transformers Whisper folder (weights, tokenizer, feature extractor, generation config)."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    config = whisper_config_for(ct2)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    state = whisper_state_dict(ct2)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    # proj_out is tied to embed_tokens and so is absent from the converted state.
    missing = [m for m in missing if m != "proj_out.weight"]
    if missing or unexpected:
        raise ValueError(f"conversion mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
    model.tie_weights()
    tokenizer = build_whisper_tokenizer(tokenizer_json)
    lang_tokens = {tokenizer.convert_tokens_to_ids(t): t for t in tokenizer.all_special_tokens}
    model.generation_config = generation_config_for(config, ct2_config, lang_tokens)
    processor = WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=config.num_mel_bins), tokenizer=tokenizer
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
