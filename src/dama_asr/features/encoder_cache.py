"""Encoder-output cache: when the encoder is frozen, encode each utterance once, for every run.

Layout under `$DAMA_HOME/cache/encoder/<backbone fingerprint>/` (details in `cache_store`):
    shard-<uuid>.safetensors   float16 tensors (1500, D), one per utterance key
    index.jsonl                one line per shard: {"shard": name, "keys": [...]}, appended under a lock

The fingerprint hashes the encoder's configuration, the feature extractor, a strided sample of every
encoder weight and the precision the encoder ran in, so a different model (or an adapted encoder)
never reads another's outputs, and a bf16 cache is never read by a float32 run (or the reverse).
A key hashes the audio's absolute path, size and mtime: an edited file is re-encoded.
We keep all 1500 frames (30 s padded): Whisper's cross-attention was trained on padded windows.
Shards are written to a temporary name, fsynced and renamed (`dama_asr.durable`), so readers never
see half a shard, and a full disk stops with DiskFullError before anything is half-written; two
writers of the same key both produce valid shards and the index keeps the first. Everything here
can be recomputed, so damage is healed by dropping it: an unreadable shard is deleted and its
utterances encoded again, a torn index line is skipped, an abandoned temporary file is removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from dama_asr.atomic import file_lock
from dama_asr.data.manifest import Utterance
from dama_asr.durable import remove_stale_temps, write_file
from dama_asr.features.cache_store import (
    INDEX,
    LOCK,
    PRUNE_HINT,
    SHARD_ERRORS,
    SHARD_GLOB,
    TOUCH_SECONDS,
    CacheError,
    append_record,
    check_shards,
    drop_shard,
    encoder_root,
    live_index,
    read_index,
    touch_last_used,
)
from dama_asr.features.log_mel import log_mel_items
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


class _Unreadable(Exception):
    def __init__(self, shard: str, reason: str) -> None:
        super().__init__(shard, reason)
        self.shard, self.reason = shard, reason


class EncoderCache:
    """Float16 encoder outputs on disk, looked up by utterance key.

    A shard that cannot be read as the index says (truncated, corrupt, vanished, wrong shape) is
    dropped with one warning and its utterances count as missing again: `missing` checks the shards
    it is asked about, so `fill_cache` re-encodes them, and `get` re-encodes them on the spot when an
    encoder is attached (`attach_encoder`). `frame_shape` (frames, D), where the caller knows it,
    makes the shape check exact; otherwise the shape most shards share is taken as right.
    """

    def __init__(
        self, fingerprint: str, root: Path | None = None, frame_shape: tuple[int, int] | None = None
    ) -> None:
        self.dir = (root or encoder_root()) / fingerprint
        self.dir.mkdir(parents=True, exist_ok=True)
        self.frame_shape = tuple(frame_shape) if frame_shape else None
        self._index: dict[str, str] = {}
        self._handles: dict[str, object] = {}
        self._checked: set[str] = set()  # shards whose header matched the index, in this process
        self._warned_torn = False
        self._touched = float("-inf")
        self._encoder: tuple[dict[str, Utterance], Callable, int] | None = None
        remove_stale_temps(self.dir)
        self.reload()
        self._touch()

    def reload(self) -> None:
        """Re-read the index (after other processes added or dropped shards)."""
        # Under the writers' lock, so a line being appended is never mistaken for a torn one.
        with file_lock(self.dir / LOCK):
            records, torn = read_index(self.dir)
        if torn and not self._warned_torn:
            self._warned_torn = True
            log.warning("encoder cache %s: skipped %d unreadable line(s) of %s (left by a crash); "
                        "`dama cache prune` rewrites it", self.dir, torn, INDEX)  # fmt: skip
        self._index = live_index(self.dir, records)
        live = set(self._index.values())
        for shard in [s for s in self._handles if s not in live]:
            del self._handles[shard]

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def attach_encoder(
        self,
        items: Sequence[Utterance],
        keys: Sequence[str],
        encode: Callable[[Sequence[Utterance]], torch.Tensor],
        batch_size: int = 8,
    ) -> None:
        """Let `get` re-encode these items when their shard turns out unreadable mid-run."""
        self._encoder = (dict(zip(keys, items, strict=True)), encode, batch_size)

    def missing(self, keys: Sequence[str]) -> list[str]:
        """The keys not cached, after dropping the unreadable shards that held some of them."""
        keys = list(dict.fromkeys(keys))
        while self._drop_bad({self._index[k] for k in keys if k in self._index}):
            pass  # a dropped shard's key may fall back to a second writer's copy: check that one too
        return [k for k in keys if k not in self._index]

    def _drop_bad(self, shards: set[str]) -> bool:
        """Check the headers of the shards not checked yet; drop the bad ones. True if any was."""
        todo: dict[str, list[str]] = {s: [] for s in shards if s not in self._checked}
        if not todo:
            return False
        for key, shard in self._index.items():
            if shard in todo:
                todo[shard].append(key)
        problems, shape = check_shards(self.dir, todo, self.frame_shape)
        self.frame_shape = self.frame_shape or shape
        self._checked.update(s for s in todo if s not in problems)
        for shard, problem in problems.items():
            self._drop(shard, problem)
        return bool(problems)

    def _drop(self, shard: str, reason: str) -> None:
        self._handles.pop(shard, None)
        self._checked.discard(shard)
        drop_shard(self.dir, shard, reason)
        self.reload()

    def add(self, outputs: dict[str, torch.Tensor]) -> None:
        """Store {key: (frames, D)} as one shard, in float16; DiskFullError if it does not fit."""
        if not outputs:
            return
        tensors = {k: v.detach().to(torch.float16).contiguous().cpu() for k, v in outputs.items()}
        self.frame_shape = self.frame_shape or tuple(next(iter(tensors.values())).shape)
        name = f"shard-{uuid.uuid4().hex}.safetensors"
        self.dir.mkdir(parents=True, exist_ok=True)  # `dama cache prune` may have evicted the folder
        write_file(self.dir / name, save(tensors), PRUNE_HINT)
        append_record(self.dir, {"shard": name, "keys": list(tensors)})
        self._checked.add(name)
        for key in tensors:
            self._index.setdefault(key, name)
        self._touch()

    def get(self, keys: Sequence[str]) -> torch.Tensor:
        """(B, frames, D) float16."""
        self._touch()
        for _ in range(len(keys) + 1):  # each failed round drops a shard holding at least one key
            try:
                return self._read(keys)
            except _Unreadable as bad:
                self._drop(bad.shard, bad.reason)
                absent = self.missing(keys)
                if absent and not self._reencode(absent):
                    raise CacheError(
                        f"encoder cache {self.dir}: {bad.shard} could not be read ({bad.reason}); it was "
                        "removed: rerun, and its utterances are encoded again"
                    ) from None
        raise CacheError(f"encoder cache {self.dir}: shards keep failing to read; run `dama cache verify`")

    def _read(self, keys: Sequence[str]) -> torch.Tensor:
        rows = []
        for key in keys:
            shard = self._index[key]
            try:
                handle = self._handles.get(shard)
                if handle is None:
                    handle = self._handles[shard] = safe_open(str(self.dir / shard), framework="pt")
                row = handle.get_tensor(key)  # (frames, D)
            except SHARD_ERRORS as err:
                raise _Unreadable(shard, f"{type(err).__name__}: {err}") from err
            if row.dtype != torch.float16 or (self.frame_shape and tuple(row.shape) != self.frame_shape):
                raise _Unreadable(shard, f"{key} is {row.dtype} {tuple(row.shape)}")
            rows.append(row)
        return torch.stack(rows)

    def _reencode(self, keys: list[str]) -> bool:
        if self._encoder is None or any(k not in self._encoder[0] for k in keys):
            return False
        by_key, encode, batch_size = self._encoder
        fill_cache(self, [by_key[k] for k in keys], keys, encode, batch_size)
        return not self.missing(keys)

    def _touch(self) -> None:
        """Mark the folder used (the eviction order of `dama cache prune`), at most every few minutes."""
        now = time.monotonic()
        if now - self._touched > TOUCH_SECONDS:
            self._touched = now
            touch_last_used(self.dir)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.dir.glob(SHARD_GLOB))


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
    encoder = whisper.model.encoder
    dtype = next(encoder.parameters()).dtype

    def encode(batch: Sequence[Utterance]) -> torch.Tensor:
        features = log_mel_items(feature_extractor, batch).to(device, dtype=dtype)  # (B, mels, 3000)
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

    from dama_asr.backbone.unwrap import base_model_of

    whisper = base_model_of(backbone.model)
    fe, precision = backbone.processor.feature_extractor, backbone.precision
    frames = (whisper.config.max_source_positions, whisper.config.d_model)
    if cache is None:  # not `cache or ...`: an empty cache is falsy (it has a __len__)
        cache = EncoderCache(whisper_fingerprint(whisper, fe, precision), frame_shape=frames)
    keys = [utterance_key(item.audio) for item in items]
    encode = encoder_function(whisper, fe, backbone.device, precision)
    cache.attach_encoder(items, keys, encode, batch_size)
    missing = cache.missing(keys)
    if missing:
        with tqdm(total=len(missing), desc="encoder cache", unit="utt", leave=False) as bar:
            fill_cache(cache, items, keys, encode, batch_size, on_batch=bar.update)
    return lambda positions: cache.get([keys[i] for i in positions])
