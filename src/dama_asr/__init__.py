"""dama-asr: depth-aware, parameter-efficient adaptation of Whisper to low-resource languages."""

__version__ = "0.1.0"
