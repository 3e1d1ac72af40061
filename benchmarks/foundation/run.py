"""Load time, transcription speed (real-time factor) and peak memory of the embedded Whisper-base.

Run: python benchmarks/foundation/run.py [--clips 16] [--out benchmarks/foundation/results.json]
The conversion is timed in a fresh temporary $DAMA_HOME; everything else on the converted folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "It was a bright cold day in April, and the clocks were striking thirteen.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "A journey of a thousand miles begins with a single step.",
]


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument(
        "--note", default="", help="conditions worth recording (e.g. other load on the machine)"
    )
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    args = parser.parse_args()
    os.environ["DAMA_HOME"] = tempfile.mkdtemp(prefix="dama-bench-")
    import torch

    from dama_asr.backbone.embedded import prepare_embedded_whisper_base
    from dama_asr.backbone.loading import load_backbone
    from dama_asr.data.audio import load_audio
    from dama_asr.data.espeak import synthesize
    from dama_asr.inference.decoding import DecodingOptions, transcribe

    t = time.perf_counter()
    prepare_embedded_whisper_base()
    convert_s = time.perf_counter() - t
    t = time.perf_counter()
    backbone = load_backbone("whisper-base")
    load_s = time.perf_counter() - t

    clip_dir = Path(os.environ["DAMA_HOME"]) / "clips"
    audios = [
        load_audio(
            synthesize(SENTENCES[i % len(SENTENCES)], clip_dir / f"{i}.wav", voice="en", speed=140 + 5 * i)
        )
        for i in range(args.clips)
    ]
    audio_s = sum(len(a) for a in audios) / 16000
    transcribe(backbone, audios[:1], DecodingOptions(language="en"))  # warm-up
    rows = {}
    for batch in (1, 8):
        t = time.perf_counter()
        transcribe(backbone, audios, DecodingOptions(language="en", batch_size=batch))
        wall = time.perf_counter() - t
        rows[f"batch_{batch}"] = {
            "wall_s": round(wall, 2),
            "rtf": round(wall / audio_s, 3),
            "x_realtime": round(audio_s / wall, 1),
        }
    result = {
        "command": f"python benchmarks/foundation/run.py --clips {args.clips}",
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
        },
        "note": args.note,
        "first_conversion_s": round(convert_s, 1),
        "load_s": round(load_s, 2),
        "clips": args.clips,
        "audio_s": round(audio_s, 1),
        "greedy": rows,
        "peak_rss_gib": round(peak_rss_gib(), 2),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
