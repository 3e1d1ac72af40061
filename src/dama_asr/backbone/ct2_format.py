"""Reader for CTranslate2 `model.bin` files (the format of the embedded Whisper-base).

Layout (CTranslate2 spec version 6): uint32 version; string spec name; uint32 revision;
uint32 n_variables; per variable: string name, uint8 rank, rank x uint32 dims, uint8 dtype,
uint32 n_bytes, raw bytes; then uint32 n_aliases, each (alias, target) strings.
Strings are a uint16 length (counting the trailing NUL), utf-8 bytes and the NUL.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from dama_asr.errors import DamaError

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_BF16 = 5


class CTranslate2FormatError(DamaError, ValueError):
    """The file is not a readable CTranslate2 model (truncated, corrupt or another version)."""


@dataclass(frozen=True)
class CTranslate2Model:
    spec_name: str
    spec_revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str]

    def get(self, name: str) -> np.ndarray:
        return self.variables[self.aliases.get(name, name)]


def _read_exact(f: BinaryIO, n: int, path: Path) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise CTranslate2FormatError(f"{path}: file ends early (truncated download or corrupt file)")
    return data


def _u32(f: BinaryIO, path: Path) -> int:
    return struct.unpack("<I", _read_exact(f, 4, path))[0]


def _string(f: BinaryIO, path: Path) -> str:
    (length,) = struct.unpack("<H", _read_exact(f, 2, path))
    raw = _read_exact(f, length, path)
    return raw[:-1].decode("utf-8")


def read_ctranslate2_model(path: str | Path) -> CTranslate2Model:
    """Read every variable of a CTranslate2 model file into numpy arrays (dtype as stored)."""
    path = Path(path)
    with open(path, "rb") as f:
        version = _u32(f, path)
        if version != 6:
            raise CTranslate2FormatError(f"{path}: CTranslate2 binary version {version}, expected 6")
        spec_name = _string(f, path)
        revision = _u32(f, path)
        variables: dict[str, np.ndarray] = {}
        for _ in range(_u32(f, path)):
            name = _string(f, path)
            (rank,) = struct.unpack("<B", _read_exact(f, 1, path))
            shape = struct.unpack(f"<{rank}I", _read_exact(f, 4 * rank, path)) if rank else ()
            (dtype_id,) = struct.unpack("<B", _read_exact(f, 1, path))
            n_bytes = _u32(f, path)
            raw = _read_exact(f, n_bytes, path)
            if dtype_id == _BF16:
                # numpy has no bfloat16: widen to float32 by placing the 16 bits high.
                as_u32 = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
                array = as_u32.view(np.float32)
            elif dtype_id in _DTYPES:
                array = np.frombuffer(raw, dtype=_DTYPES[dtype_id])
            else:
                raise CTranslate2FormatError(f"{path}: variable {name!r} has unknown dtype id {dtype_id}")
            variables[name] = array.reshape(shape)
        aliases = {}
        for _ in range(_u32(f, path)):
            alias = _string(f, path)
            aliases[alias] = _string(f, path)
    return CTranslate2Model(spec_name, revision, variables, aliases)
