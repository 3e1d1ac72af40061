"""Named adapter sets: one adapter per language over one base model, saved as one folder.

Layout (the layout peft's own `save_pretrained` writes for adapters named after their languages):

    <set>/adapter_set.json     the index: format, base model id + fingerprint, members
    <set>/checksums.json       size and sha256 of every file below (`dama_asr.integrity`), written last
    <set>/<language>/          a plain peft adapter: adapter_config.json + adapter_model.safetensors
                               (+ dama_adapter.json and its own checksums.json when added from a
                               `dama train` folder, kept byte for byte)

    adapter_set.json = {"format": "dama-adapter-set", "version": 1,
                        "base_model": {"id": "<name>", "fingerprint": "<hex>"},
                        "members": {"<language>": {"folder", "method", "adapter", "metrics", "base_model"}}}

Plain peft loads any member on its own or several side by side:
`PeftModel.from_pretrained(base, set/"cy", adapter_name="cy")`, then `.load_adapter(set/"en", adapter_name="en")`.

A set records a fingerprint of its base model's weights, because an adapter applied to another base of
the same shapes loads without complaint and decodes nonsense; `load_into` refuses such a base by name.
Only JSON and safetensors are read: nothing in a set can run code when loaded.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import PeftModel
from safetensors import SafetensorError, safe_open
from torch import nn

from dama_asr.atomic import atomic_dir, atomic_write_text
from dama_asr.backbone.loading import Backbone
from dama_asr.errors import DamaError
from dama_asr.integrity import (
    IntegrityError,
    read_json_object,
    read_manifest,
    verify_files,
    verify_manifest,
    write_manifest,
)
from dama_asr.languages import UnknownLanguageError, normalise_language
from dama_asr.quiet import peft_quietly

SET_INDEX = "adapter_set.json"
SET_CHECKSUMS = "checksums.json"
SET_FORMAT = "dama-adapter-set"
SET_VERSION = 1
# Every adapter folder `save_adapter` writes ends with this manifest; its format is read from the file.
MEMBER_CHECKSUMS = "checksums.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_FIX = "save the set again, or copy the folder again from where it was saved"
# Config keys that decide the shapes the weights have; generation settings are left out on purpose
# (a user may edit suppress_tokens or max_length without changing what an adapter was trained on).
_ARCH_KEYS = ("model_type", "vocab_size", "num_mel_bins", "d_model", "encoder_layers", "decoder_layers",
              "encoder_attention_heads", "decoder_attention_heads", "encoder_ffn_dim", "decoder_ffn_dim",
              "max_source_positions", "max_target_positions", "activation_function", "scale_embedding")  # fmt: skip
_SAMPLE = 4096  # elements hashed per weight tensor


class AdapterSetError(DamaError, ValueError):
    """An adapter set that cannot be built, saved or loaded; the message names the set and member."""


class AdapterSetIntegrityError(AdapterSetError, IntegrityError):
    """A file of a saved set that changed after saving (truncated, corrupt, edited)."""


def _base_tensors(model: nn.Module):
    """(name, tensor) of the base weights, the same names whether or not peft wraps the model.

    peft renames a wrapped linear's weight `<module>.base_layer.weight` and adds factors under the
    adapter's name (`lora_A.<name>.weight`); dropping those gives back the plain Whisper's state dict.
    """
    adapters: set[str] = set()
    if isinstance(model, PeftModel):
        adapters = set(model.peft_config)
        model = model.get_base_model()
    for name, tensor in model.state_dict().items():
        parts = name.split(".")
        if adapters.intersection(parts):
            continue
        yield ".".join(p for p in parts if p != "base_layer"), tensor


def base_fingerprint(model: nn.Module) -> str:
    """16 hex digits identifying a base Whisper's architecture and weights (peft-wrapped or not).

    Hashes the shape-deciding config keys and, per tensor, its name, shape and a strided sample of
    4,096 values rounded to bfloat16: the same digits whether the frozen weights are held in float32
    or bfloat16 (rounding is idempotent); fp16-held weights round differently and do not match.
    Merged adapters and residual inits (PiSSA, MiLoRA) change the base weights, hence the digits.
    """
    whisper = model.get_base_model() if isinstance(model, PeftModel) else model
    h = hashlib.sha256()
    config = {k: getattr(whisper.config, k, None) for k in _ARCH_KEYS}
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, tensor in sorted(_base_tensors(model), key=lambda item: item[0]):
            flat = tensor.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // _SAMPLE)].cpu()
            if sample.is_floating_point():
                sample = sample.to(torch.bfloat16).float()
            h.update(f"{name}:{tuple(tensor.shape)}".encode())
            h.update(sample.numpy().tobytes())
    return h.hexdigest()[:16]


def _language(code: str, where: str) -> str:
    try:
        return normalise_language(code)
    except UnknownLanguageError as err:
        raise AdapterSetError(f"{where}: {err}") from None


def _read_json(path: Path, error: type[DamaError] = AdapterSetError) -> dict:
    return read_json_object(path, error, _FIX)


def _check_weights(folder: Path) -> None:
    """A member's weights must be a readable safetensors file: a pickled .bin could run code."""
    path = folder / ADAPTER_WEIGHTS
    if not path.is_file():
        pickled = (
            " (only adapter_model.bin, a pickle, which dama does not load)"
            if (folder / "adapter_model.bin").is_file()
            else ""
        )
        raise AdapterSetError(f"{folder}: no {ADAPTER_WEIGHTS}{pickled}; save the adapter with safetensors")
    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except (SafetensorError, OSError) as err:
        raise AdapterSetIntegrityError(f"{path}: not a readable safetensors file ({err}); {_FIX}") from None


def _summary(config: dict) -> dict:
    """The few adapter settings worth reading in the index; the member's adapter_config.json has all."""
    targets = config.get("target_modules") or []
    return {
        "peft_type": str(config.get("peft_type", "")),
        "r": config.get("r"),
        "lora_alpha": config.get("lora_alpha"),
        "use_dora": bool(config.get("use_dora", False)),
        "target_modules": len(targets) if isinstance(targets, (list, tuple, set)) else targets,
        "ranks": sorted(set((config.get("rank_pattern") or {}).values())) or [config.get("r")],
    }


def _method(config: dict, meta: dict) -> str:
    if meta.get("method"):
        return str(meta["method"])
    return "dora" if config.get("use_dora") else str(config.get("peft_type", "lora")).lower()


def _checked_metrics(metrics: dict | None, language: str) -> dict:
    metrics = dict(metrics or {})
    try:
        json.dumps(metrics, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise AdapterSetError(
            f"metrics for {language!r}: not plain JSON numbers and strings ({err}); pass e.g. {{'wer': 0.31}}"
        ) from None
    return metrics


@dataclass
class _Member:
    record: dict
    files: dict[str, bytes] = field(default_factory=dict)  # staged by add(), written by save()
    source: Path | None = None  # the member folder of a saved set

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        if self.source is not None:
            for path in sorted(p for p in self.source.iterdir() if p.is_file()):
                shutil.copyfile(path, folder / path.name)
        for name, data in self.files.items():
            (folder / name).write_bytes(data)


class AdapterSet:
    """Named adapters, one per language, for one base model; `save` and `load` a folder of them.

    >>> s = AdapterSet.for_base(backbone.model, "whisper-base")
    >>> s.add("cy", "runs/cy/best", metrics={"wer": 0.31}); s.add("en", en_peft_model); s.save("sets/cy-en")
    >>> model = AdapterSet.load("sets/cy-en").load_into(fresh_base)   # a PeftModel holding "cy" and "en"
    >>> activate(model, "en")
    """

    def __init__(self, base_model: str, fingerprint: str) -> None:
        self.base_model = base_model
        self.fingerprint = fingerprint
        self.folder: Path | None = None  # where the set was last saved or loaded from
        self._members: dict[str, _Member] = {}

    @classmethod
    def for_base(cls, model: nn.Module, base_model: str = "") -> AdapterSet:
        """An empty set for `model` (plain Whisper or peft-wrapped), fingerprinted now."""
        name = base_model or str(getattr(_plain(model).config, "_name_or_path", "") or "")
        return cls(name, base_fingerprint(model))

    @property
    def languages(self) -> list[str]:
        return list(self._members)

    def member(self, language: str) -> dict:
        """The index record of one member: folder, method, adapter summary, metrics."""
        code = _language(language, self._where())
        if code not in self._members:
            raise AdapterSetError(f"{self._where()}: no member {code!r}; it holds {', '.join(self._members)}")
        return json.loads(json.dumps(self._members[code].record))

    def _where(self) -> str:
        return str(self.folder) if self.folder else f"the adapter set for {self.base_model or 'its base'}"

    def add(
        self,
        language: str,
        source: PeftModel | str | Path,
        metrics: dict | None = None,
        *,
        adapter_name: str | None = None,
        method: str | None = None,
    ) -> str:
        """Add the adapter for `language` (a Whisper code or name); returns its code.

        source: a peft adapter folder (`dama train`'s best/ or final/, or any peft save), copied byte
        for byte; or a PeftModel, whose adapter `adapter_name` (default: the active one) is snapshot
        now, so training on afterwards does not change the member. metrics: e.g. {"wer": 0.31}.
        """
        code = _language(language, f"{self._where()}: member")
        if code in self._members:
            raise AdapterSetError(f"{self._where()}: already has a member {code!r}; remove({code!r}) first")
        metrics = _checked_metrics(metrics, code)
        if isinstance(source, PeftModel):
            files, config, meta = self._snapshot(source, adapter_name, code)
        elif isinstance(source, (str, Path)):
            files, config, meta = _read_adapter_folder(Path(source))
        else:
            raise AdapterSetError(
                f"member {code!r}: got a {type(source).__name__}; pass a peft adapter folder or a PeftModel"
            )
        record = {
            "folder": code,
            "method": method or _method(config, meta),
            "adapter": _summary(config),
            "metrics": metrics,
            "base_model": meta.get("base_model", self.base_model),
        }
        self._members[code] = _Member(record, files)
        return code

    def remove(self, language: str) -> None:
        code = _language(language, self._where())
        if self._members.pop(code, None) is None:
            raise AdapterSetError(f"{self._where()}: no member {code!r} to remove")

    def _snapshot(self, model: PeftModel, adapter_name: str | None, code: str):
        name = adapter_name or model.active_adapter
        if name not in model.peft_config:
            raise AdapterSetError(
                f"member {code!r}: the model has no adapter {name!r}; it holds {', '.join(model.peft_config)}"
            )
        found = base_fingerprint(model)
        if found != self.fingerprint:
            raise AdapterSetError(
                f"member {code!r}: the model's base weights (fingerprint {found}) are not the set's base "
                f"{self.base_model or '(unnamed)'} (fingerprint {self.fingerprint}): merged weights and "
                "residual inits (PiSSA, MiLoRA) change them; add the folder `dama train` saved instead"
            )
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp, selected_adapters=[name], safe_serialization=True)
            saved = Path(tmp) if name == "default" else Path(tmp) / name  # peft's own layout
            # peft's model card is written per save and names nothing the set needs.
            files = {p.name: p.read_bytes() for p in saved.iterdir() if p.is_file() and p.name != "README.md"}
        return files, json.loads(files[ADAPTER_CONFIG]), {}

    def save(self, folder: str | Path) -> Path:
        """Write the set atomically: member folders, the index, then the checksum manifest."""
        folder = Path(folder)
        if not self._members:
            raise AdapterSetError(f"{folder}: the set has no members; add() an adapter first")
        index = {
            "format": SET_FORMAT,
            "version": SET_VERSION,
            "base_model": {"id": self.base_model, "fingerprint": self.fingerprint},
            "members": {code: m.record for code, m in self._members.items()},
        }
        with atomic_dir(folder) as scratch:
            for code, member in self._members.items():
                member.write(scratch / code)
            atomic_write_text(scratch / SET_INDEX, json.dumps(index, indent=2, allow_nan=False) + "\n")
            write_manifest(scratch, SET_CHECKSUMS, SET_FORMAT)  # last: it describes every file above
        # The bytes are on disk now; later saves copy from there instead of holding them in memory.
        for code, member in self._members.items():
            member.files, member.source = {}, folder / code
        self.folder = folder
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> AdapterSet:
        """Read and verify a saved set: every file against its checksum, the index, each member."""
        folder = Path(folder)
        if not folder.is_dir():
            raise AdapterSetError(f"{folder}: no such adapter set folder")
        if not verify_manifest(folder, SET_CHECKSUMS, SET_FORMAT, AdapterSetIntegrityError, _FIX):
            raise AdapterSetError(f"{folder}: no {SET_CHECKSUMS}, so not an adapter set dama saved; {_FIX}")
        index = _read_json(folder / SET_INDEX, AdapterSetIntegrityError)
        if index.get("format") != SET_FORMAT or not isinstance(index.get("version"), int):
            raise AdapterSetError(f"{folder / SET_INDEX}: not a {SET_FORMAT} index")
        if index["version"] > SET_VERSION:
            raise AdapterSetError(
                f"{folder / SET_INDEX}: format version {index['version']} is newer than this dama reads "
                f"({SET_VERSION}); upgrade dama-asr"
            )
        base = index.get("base_model")
        if not (isinstance(base, dict) and isinstance(base.get("fingerprint"), str)):
            raise AdapterSetError(f"{folder / SET_INDEX}: base_model has no fingerprint")
        members = index.get("members")
        if not (isinstance(members, dict) and members):
            raise AdapterSetError(f"{folder / SET_INDEX}: lists no members")
        loaded = cls(str(base.get("id", "")), base["fingerprint"])
        loaded.folder = folder
        for code, record in members.items():
            sub = record.get("folder") if isinstance(record, dict) else None
            # One plain name: an index edited to point at ../elsewhere must not escape the set.
            if not (isinstance(sub, str) and re.fullmatch(r"[A-Za-z0-9_-]+", sub)):
                raise AdapterSetError(f"{folder / SET_INDEX}: member {code!r} has no valid folder name")
            member_dir = folder / sub
            _read_json(member_dir / ADAPTER_CONFIG, AdapterSetIntegrityError)
            _check_weights(member_dir)
            loaded._members[code] = _Member(record, source=member_dir)
        return loaded

    def load_into(self, base: nn.Module, languages: list[str] | None = None) -> PeftModel:
        """A PeftModel over `base` (modified in place, as peft does) holding each member by its language.

        The first language is active. `base` must be the model the set was built on (fingerprint).
        """
        if self.folder is None:
            raise AdapterSetError(f"{self._where()}: not saved yet; save() it, then load_into")
        if isinstance(base, PeftModel):
            raise AdapterSetError(
                f"{self.folder}: the model given already holds peft adapters; pass the plain base model"
            )
        found = base_fingerprint(base)
        if found != self.fingerprint:
            given = getattr(base.config, "_name_or_path", "") or "(unnamed)"
            raise AdapterSetError(
                f"{self.folder}: built for base model {self.base_model or '(unnamed)'} (fingerprint "
                f"{self.fingerprint}), but the model given, {given}, has fingerprint {found}; "
                f"load {self.base_model or 'the base it was built on'} instead"
            )
        codes = [_language(lang, str(self.folder)) for lang in (languages or self.languages)]
        missing = [c for c in codes if c not in self._members]
        if missing:
            raise AdapterSetError(
                f"{self.folder}: no member for {', '.join(missing)}; it holds {', '.join(self._members)}"
            )
        model: PeftModel | None = None
        for code in dict.fromkeys(codes):
            sub = self.folder / self._members[code].record["folder"]
            try:
                if model is None:
                    with peft_quietly():
                        model = PeftModel.from_pretrained(base, sub, adapter_name=code)
                else:
                    model.load_adapter(sub, adapter_name=code)
            except (ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as err:
                raise AdapterSetError(
                    f"{sub}: cannot apply the {code!r} adapter to this base ({type(err).__name__}: {err}); "
                    f"{_FIX}"
                ) from err
        assert model is not None  # codes is never empty: a loaded set has members
        model.eval()
        return model


def _read_adapter_folder(folder: Path) -> tuple[dict[str, bytes], dict, dict]:
    """Verify a peft adapter folder and read its top-level files (sub-folders are other adapters)."""
    if not folder.is_dir():
        raise AdapterSetError(f"{folder}: no such adapter folder")
    manifest = folder / MEMBER_CHECKSUMS
    if manifest.is_file():
        fmt = _read_json(manifest, AdapterSetIntegrityError).get("format", "")
        files = read_manifest(folder, MEMBER_CHECKSUMS, fmt, AdapterSetIntegrityError)
        verify_files(folder, files or {}, AdapterSetIntegrityError, "retrain it or copy it again")
    # Imported here: `adapters.io` pulls in every method family, which only folder members need.
    from dama_asr.adapters import get_method, method_names, read_adapter_meta

    meta = read_adapter_meta(folder)
    if meta.get("method") in method_names() and get_method(meta["method"]).saves_full_model:
        raise AdapterSetError(
            f"{folder}: a full fine-tune, not an adapter; a set holds peft adapters (lora, dora, dama, ...)"
        )
    config = _read_json(folder / ADAPTER_CONFIG)
    _check_weights(folder)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}, config, meta


def _plain(model: nn.Module) -> nn.Module:
    return model.get_base_model() if isinstance(model, PeftModel) else model


def activate(model: nn.Module, language: str) -> str:
    """Make `language`'s adapter the active one (frozen: this is for inference); returns its name."""
    names = list(model.peft_config) if isinstance(model, PeftModel) else []
    code = language if language in names else _language(language, "activate")
    if code not in names:
        held = ", ".join(names) if names else "no named adapters"
        raise AdapterSetError(
            f"no adapter for language {code!r}: the model holds {held}; load it into the set"
        )
    model.set_adapter(code, inference_mode=True)
    return code


def adapter_set_backbone(
    backbone: Backbone, folder: str | Path, languages: list[str] | None = None
) -> Backbone:
    """`backbone` holding a saved set's adapters (all, or `languages`), ready for inference."""
    model = AdapterSet.load(folder).load_into(backbone.model, languages).to(backbone.device)
    return Backbone(
        model, backbone.processor, f"{backbone.name}+{folder}", backbone.precision, routes_by_language=True
    ).ready_for_inference()


__all__ = [
    "AdapterSet",
    "AdapterSetError",
    "AdapterSetIntegrityError",
    "activate",
    "adapter_set_backbone",
    "base_fingerprint",
]
