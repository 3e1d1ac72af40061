"""Encoder-output cache: when the encoder is frozen, encode each utterance once, for every run.

Layout under `$DAMA_HOME/cache/encoder/<backbone fingerprint>/`:
    shard-<uuid>.safetensors   float16 tensors (1500, D), one per utterance key
    index.jsonl                one line per shard: {"shard": name, "keys": [...]}, appended under a lock

The fingerprint hashes the encoder's configuration, the feature extractor, a strided sample of every
encoder weight and the precision the encoder ran in, so a different model (or an adapted encoder)
never reads another's outputs, and a bf16 cache is never read by a float32 run (or the reverse).
A key hashes the audio's absolute path, size and mtime: an edited file is re-encoded.
We keep all 1500 frames (30 s padded): Whisper's cross-attention was trained on padded windows.
Shards are written to a temporary name and renamed, so readers never see half a shard; two writers
of the same key both produce valid shards and the index keeps the first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from dama_asr.atomic import file_lock
from dama_asr.data.manifest import Utterance
from dama_asr.paths import dama_home
from dama_asr.precision import autocast, compute_dtype

log = logging.getLogger(__name__)

SHARD_SIZE = 64
_SAMPLE = 4096  # elements hashed per weight tensor


def encoder_fingerprint(
    encoder: nn.Module, encoder_config: dict, feature_extractor, precision: str = "no"
) -> str:
    """16 hex digits identifying what the encoder computes from audio at `precision` (a resolved one)."""
    h = hashlib.sha256()
    h.update(json.dumps(encoder_config, sort_keys=True, default=str).encode())
    fe = {k: v for k, v in feature_extractor.to_dict().items() if k not in ("mel_filters", "window")}
    h.update(json.dumps(fe, sort_keys=True, default=str).encode())
    low = compute_dtype(precision)
    if low is not None:
        h.update(f"precision:{precision}".encode())  # float32 fingerprints stay what they always were
    with torch.no_grad():
        for name, tensor in encoder.state_dict().items():
            flat = tensor.detach().reshape(-1).float().cpu()
            dtype = tensor.dtype
            if low is not None and tensor.is_floating_point():
                # The same fingerprint whether or not the frozen weights are already held in `low`:
                # rounding is idempotent, and autocast computes with the rounded values either way.
                flat, dtype = flat.to(low).float(), low
            step = max(1, flat.numel() // _SAMPLE)
            h.update(f"{name}:{tuple(tensor.shape)}:{dtype}:{flat.double().sum().item():.9e}".encode())
            h.update(flat[::step].numpy().tobytes())
    return h.hexdigest()[:16]


def whisper_fingerprint(whisper_model: nn.Module, feature_extractor, precision: str = "no") -> str:
    config = whisper_model.config
    keys = ("num_mel_bins", "d_model", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim",
            "max_source_positions", "activation_function", "scale_embedding")  # fmt: skip
    return encoder_fingerprint(
        whisper_model.model.encoder, {k: getattr(config, k, None) for k in keys}, feature_extractor, precision
    )


def utterance_key(audio_path: str | Path) -> str:
    path = Path(audio_path).resolve()
    stat = path.stat()
    return hashlib.sha256(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:32]


class EncoderCache:
    """Float16 encoder outputs on disk, looked up by utterance key."""

    def __init__(self, fingerprint: str, root: Path | None = None) -> None:
        self.dir = (root or dama_home() / "cache" / "encoder") / fingerprint
        self.dir.mkdir(parents=True, exist_ok=True)
        self._index: dict[str, str] = {}
        self._handles: dict[str, object] = {}
        self.reload()

    @property
    def _index_path(self) -> Path:
        return self.dir / "index.jsonl"

    def reload(self) -> None:
        """Re-read the index (after other processes added shards)."""
        if not self._index_path.is_file():
            return
        for line in self._index_path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line being appended right now
            if (self.dir / record["shard"]).is_file():
                for key in record["keys"]:
                    self._index.setdefault(key, record["shard"])

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def missing(self, keys: Sequence[str]) -> list[str]:
        return [k for k in dict.fromkeys(keys) if k not in self._index]

    def add(self, outputs: dict[str, torch.Tensor]) -> None:
        """Store {key: (frames, D)} as one shard, in float16."""
        name = f"shard-{uuid.uuid4().hex}.safetensors"
        tmp = self.dir / f".{name}.partial"
        save_file({k: v.detach().to(torch.float16).contiguous().cpu() for k, v in outputs.items()}, str(tmp))
        os.replace(tmp, self.dir / name)
        with file_lock(self.dir / ".lock"):
            with open(self._index_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"shard": name, "keys": list(outputs)}) + "\n")
                f.flush()
                os.fsync(f.fileno())
        for key in outputs:
            self._index.setdefault(key, name)

    def get(self, keys: Sequence[str]) -> torch.Tensor:
        """(B, frames, D) float16."""
        rows = []
        for key in keys:
            shard = self._index[key]
            handle = self._handles.get(shard)
            if handle is None:
                handle = self._handles[shard] = safe_open(str(self.dir / shard), framework="pt")
            rows.append(handle.get_tensor(key))
        return torch.stack(rows)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.dir.glob("shard-*.safetensors"))


def fill_cache(
    cache: EncoderCache,
    items: Sequence[Utterance],
    keys: Sequence[str],
    encode: Callable[[Sequence[Utterance]], torch.Tensor],
    batch_size: int = 8,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[int, float]:
    """Encode the items whose keys are missing; returns (number encoded, seconds)."""
    start = time.perf_counter()
    by_key = dict(zip(keys, items, strict=True))
    todo = cache.missing(keys)
    pending: dict[str, torch.Tensor] = {}
    for first in range(0, len(todo), batch_size):
        chunk = todo[first : first + batch_size]
        hidden = encode([by_key[k] for k in chunk])  # (B, frames, D)
        pending.update({k: h for k, h in zip(chunk, hidden, strict=True)})
        if len(pending) >= SHARD_SIZE:
            cache.add(pending)
            pending = {}
        if on_batch is not None:
            on_batch(len(chunk))
    if pending:
        cache.add(pending)
    return len(todo), time.perf_counter() - start


def encoder_function(
    whisper: nn.Module, feature_extractor, device: torch.device, precision: str = "no"
) -> Callable[[Sequence[Utterance]], torch.Tensor]:
    """Utterances -> encoder outputs (B, 1500, D) of `whisper`'s (frozen) encoder, without gradients,
    computed at `precision` (a resolved one: 'no', 'bf16' or 'fp16')."""
    # Lazy: importing dama_asr.train runs its __init__, which imports this module.
    from dama_asr.train.data import log_mel

    encoder = whisper.model.encoder
    dtype = next(encoder.parameters()).dtype

    def encode(batch: Sequence[Utterance]) -> torch.Tensor:
        features = log_mel(feature_extractor, batch).to(device, dtype=dtype)  # (B, mels, 3000)
        was_training = encoder.training
        encoder.eval()
        with torch.no_grad(), autocast(precision, device):
            hidden = encoder(features).last_hidden_state
        encoder.train(was_training)
        return hidden

    return encode


def cached_encoder_outputs(
    backbone,
    items: Sequence[Utterance],
    batch_size: int = 8,
    cache: EncoderCache | None = None,
) -> Callable[[Sequence[int]], torch.Tensor]:
    """Make sure every item's encoder output is cached; return a lookup by position in `items`.

    For evaluating a model whose encoder is the base model's (frozen adapters): the dev or test set is
    then encoded once for all epochs and all cells instead of on every evaluation. `backbone.model` may
    be wrapped by peft; the cache is keyed by its encoder's fingerprint and the backbone's precision, so
    a changed encoder never reads another's outputs.
    """
    from tqdm.auto import tqdm

    from dama_asr.adapters.methods import base_model_of

    whisper = base_model_of(backbone.model)
    fe, precision = backbone.processor.feature_extractor, backbone.precision
    cache = cache or EncoderCache(whisper_fingerprint(whisper, fe, precision))
    keys = [utterance_key(item.audio) for item in items]
    missing = cache.missing(keys)
    if missing:
        encode = encoder_function(whisper, fe, backbone.device, precision)
        with tqdm(total=len(missing), desc="encoder cache", unit="utt", leave=False) as bar:
            fill_cache(cache, items, keys, encode, batch_size, on_batch=bar.update)
    return lambda positions: cache.get([keys[i] for i in positions])
