import pytest

from dama_asr.adapters import AdapterConfig, AdapterConfigError, plan_modules, trainable_parameters
from dama_asr.adapters.plan import INIT_TRAILING
from dama_asr.backbone.configs import known_config


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"theta1": 0.7, "theta2": 0.3}, "theta1/theta2"),
        ({"method": "lora", "r": 0}, "needs a rank r"),
        ({"method": "lorax"}, "unknown 'lorax'"),
        ({"targets": ("self_attn.x_proj",)}, "unknown target module 'self_attn.x_proj'"),
        ({"r_low": 40, "r_high": 32}, "r_high/r_low"),
        ({"alpha_policy": "magic"}, "alpha_policy"),
    ],
)
def test_bad_configs_name_the_field(kwargs, message):
    with pytest.raises(AdapterConfigError, match=message):
        AdapterConfig(**kwargs)


def test_rank_larger_than_layer_allows_is_refused():
    from dama_asr.testing import tiny_whisper_config

    with pytest.raises(AdapterConfigError, match="at most 16"):
        plan_modules(tiny_whisper_config(), AdapterConfig(r_high=32, r_low=8))


def test_dama_plan_on_large_v2_without_weights():
    config = known_config("openai/whisper-large-v2")
    rows = plan_modules(config, AdapterConfig())
    assert len(rows) == 32 * 10
    middle = [r for r in rows if r.zone == "middle"]
    assert {r.layer for r in middle} == set(range(10, 22))
    assert all(r.init == INIT_TRAILING and not r.train_a and r.train_b for r in middle)
    lora64 = trainable_parameters(config, AdapterConfig(method="lora", r=64))
    dama = trainable_parameters(config, AdapterConfig())
    assert dama < 0.25 * lora64


def test_targets_aliases_and_counts():
    config = known_config("whisper-base")
    qv = AdapterConfig(method="lora", r=8, targets=("qv",))
    assert trainable_parameters(config, qv) == 6 * 4 * 8 * (512 + 512)
    fc = AdapterConfig(method="lora", r=4, targets=("fc1",), encoder=True)
    # fc1 (512->2048) of every decoder and every encoder layer, at rank 4
    assert trainable_parameters(config, fc) == 2 * 6 * 4 * (512 + 2048)
    everything = AdapterConfig(method="lora", r=4, encoder=True)  # targets "all": the encoder's six linears
    enc = 6 * (4 * 4 * 1024 + 4 * (512 + 2048) * 2)
    assert (
        trainable_parameters(config, everything)
        == trainable_parameters(config, AdapterConfig(method="lora", r=4)) + enc
    )
    # peft's Whisper recipe (r=32 on every q_proj/v_proj: encoder self, decoder self and cross attention)
    recipe = AdapterConfig(method="lora", r=32, targets=("qv",), encoder=True)
    assert trainable_parameters(config, recipe) == 36 * 32 * (512 + 512) == 1_179_648


def test_round_trip_dict():
    cfg = AdapterConfig(method="dama-no-bpp", targets=("qv", "fc1"))
    assert AdapterConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(AdapterConfigError, match="unknown adapter option"):
        AdapterConfig.from_dict({"rank": 3})
