"""The export formats and CTranslate2 quantizations (no heavy imports: the CLI's choices come from here)."""

FORMATS = ("hf", "peft", "ct2")
QUANTIZATIONS = ("int8", "int8_float32", "float16", "float32")
DEFAULT_QUANTIZATION = "float32"  # lossless; faster-whisper can still run it with compute_type="int8"
