"""What the model sees of the audio, shared by training, evaluation, decoding and probing.

log_mel.py: audio -> Whisper's log-mel input (the one 30 s window path; long-form keeps its own
unpadded variant).  encoder_cache.py + cache_store.py: frozen-encoder outputs on disk, durable and
self-healing.  cross_kv.py: frozen cross-attention keys/values in RAM.

Below adapters, inference, train and evaluate; imports only data/, backbone/ and the neutral modules.
"""
