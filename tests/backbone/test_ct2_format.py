import struct

import numpy as np
import pytest

from dama_asr.backbone.ct2_format import CTranslate2FormatError, read_ctranslate2_model


def _string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _write_model(path, variables: dict[str, np.ndarray], aliases: dict[str, str]) -> None:
    dtype_ids = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.float16): 4}
    out = (
        struct.pack("<I", 6)
        + _string("WhisperSpec")
        + struct.pack("<I", 3)
        + struct.pack("<I", len(variables))
    )
    for name, arr in variables.items():
        out += _string(name) + struct.pack("<B", arr.ndim) + struct.pack(f"<{arr.ndim}I", *arr.shape)
        out += struct.pack("<B", dtype_ids[arr.dtype]) + struct.pack("<I", arr.nbytes) + arr.tobytes()
    out += struct.pack("<I", len(aliases))
    for alias, target in aliases.items():
        out += _string(alias) + _string(target)
    path.write_bytes(out)


def test_reads_variables_shapes_dtypes_and_aliases(tmp_path):
    w = np.arange(6, dtype=np.float16).reshape(2, 3)
    flag = np.array(1, dtype=np.int8)
    _write_model(tmp_path / "m.bin", {"a/w": w, "a/flag": flag}, {"b/w": "a/w"})
    model = read_ctranslate2_model(tmp_path / "m.bin")
    assert model.spec_name == "WhisperSpec" and model.spec_revision == 3
    np.testing.assert_array_equal(model.get("b/w"), w)
    assert model.get("a/w").dtype == np.float16 and model.get("a/flag").shape == ()


def test_truncated_file_is_a_clear_error(tmp_path):
    _write_model(tmp_path / "m.bin", {"a/w": np.ones((4, 4), np.float32)}, {})
    data = (tmp_path / "m.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(CTranslate2FormatError, match="cut.bin: file ends early"):
        read_ctranslate2_model(tmp_path / "cut.bin")


def test_wrong_version_is_rejected(tmp_path):
    (tmp_path / "v.bin").write_bytes(struct.pack("<I", 5) + b"\0" * 16)
    with pytest.raises(CTranslate2FormatError, match="version 5"):
        read_ctranslate2_model(tmp_path / "v.bin")
