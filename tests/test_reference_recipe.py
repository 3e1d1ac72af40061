"""The reference-recipe benchmark script (benchmarks/reference_recipe/hf_recipe.py) on a tiny random Whisper.

The benchmark's numbers only mean something if its LoRA lands where it says: peft's example puts it on
every q_proj/v_proj, the decoder-only variant on the decoder's self- and cross-attention q/v and nowhere
else. These tests check that on the real module names, and run the script end to end once.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from peft import LoraConfig, get_peft_model

from dama_asr.testing import TINY_DIMS, tiny_manifest, tiny_whisper

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "reference_recipe" / "hf_recipe.py"


def load_recipe_module():
    spec = importlib.util.spec_from_file_location("hf_recipe", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["hf_recipe"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("targets", ["encoder-decoder", "decoder"])
def test_recipe_targets_land_on_the_named_projections_only(targets):
    recipe = load_recipe_module()
    model, _ = tiny_whisper()
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=recipe.TARGETS[targets]))
    adapted = {
        name.split(".lora_A")[0].removeprefix("base_model.model.model.")
        for name, p in peft_model.named_parameters()
        if p.requires_grad and ".lora_A" in name
    }
    layers = TINY_DIMS["layers"]
    decoder = {
        f"decoder.layers.{i}.{attn}.{proj}"
        for i in range(layers)
        for attn in ("self_attn", "encoder_attn")
        for proj in ("q_proj", "v_proj")
    }
    encoder = {f"encoder.layers.{i}.self_attn.{proj}" for i in range(layers) for proj in ("q_proj", "v_proj")}
    assert adapted == (decoder | encoder if targets == "encoder-decoder" else decoder)


def test_decoder_only_recipe_trains_and_reports(tmp_path):
    train = tiny_manifest(tmp_path / "train", n=4)
    dev = tiny_manifest(tmp_path / "dev", n=2)
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--model", "tiny-random", "--train", str(train), "--dev", str(dev),
         "--epochs", "1", "--batch-size", "2", "--targets", "decoder", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    # Each adapted d x d projection adds r * (d + d) parameters; the recipe's r is 32.
    d = TINY_DIMS["d_model"]
    assert result["trainable_parameters"] == TINY_DIMS["layers"] * 4 * 32 * 2 * d
    assert result["recipe"].endswith("(decoder only)")
    assert result["train_utterances"] == 4 and len(result["epoch_end_seconds"]) == 1
    assert result["samples_per_second"] > 0 and result["dev_wer"] >= 0
