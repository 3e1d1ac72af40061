import pytest
import torch

from dama_asr.backbone.configs import KNOWN_SIZES, known_config, meta_model
from dama_asr.backbone.loading import BackboneError, load_backbone
from dama_asr.testing import save_tiny_whisper


def test_local_folder_loads_with_transformers_code(tmp_path):
    folder = save_tiny_whisper(tmp_path / "tiny", seed=3)
    backbone = load_backbone(str(folder))
    reference = load_backbone("tiny-random")  # seed 0: different weights
    assert backbone.model.config.d_model == 16
    assert "cy" in backbone.languages and len(backbone.languages) == 99
    assert not torch.equal(
        backbone.model.model.decoder.layers[0].fc1.weight, reference.model.model.decoder.layers[0].fc1.weight
    )
    assert backbone.processor.tokenizer(" the", add_special_tokens=False).input_ids == [264]


def test_unknown_name_lists_builtins():
    with pytest.raises(BackboneError, match="built-in name \\(whisper-base, tiny-random\\)"):
        load_backbone("whisper-huge")


def test_folder_without_config_is_explained(tmp_path):
    with pytest.raises(BackboneError, match="not a transformers model folder"):
        load_backbone(str(tmp_path))


def test_hub_id_without_network_says_how_to_use_a_local_folder():
    with pytest.raises(BackboneError, match="--local-dir DIR") as info:
        load_backbone("openai/whisper-small")
    assert "--model whisper-base" in str(info.value)


def test_known_sizes_build_on_meta_without_memory():
    model = meta_model("openai/whisper-large-v2")
    params = sum(p.numel() for p in model.parameters())
    assert 1.50e9 < params < 1.56e9  # Whisper large-v2 has 1.55 B parameters
    assert next(model.parameters()).device.type == "meta"
    assert known_config("whisper-large-v3").num_mel_bins == 128
    assert set(KNOWN_SIZES) >= {"whisper-tiny", "whisper-base", "whisper-small", "whisper-medium"}
    with pytest.raises(KeyError, match="known sizes"):
        known_config("whisper-giant")
