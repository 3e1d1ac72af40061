"""One conformance suite, run against every registered adapter method (STYLE.md rule 7).

The methods come from the registry: a new family passes this suite by registering itself. Methods
built over saved experts (MoLE) are no standalone adapter (they route per utterance, so they neither
merge nor load in plain peft) and have their own contract suite (tests/adapters/test_mole.py).
"""

import copy

import pytest
import torch
from peft import PeftModel

from dama_asr.adapters import (
    AdapterConfig,
    apply_adapter,
    get_method,
    load_adapted,
    method_names,
    plan_modules,
    save_adapter,
    trainable_parameter_count,
    trainable_parameters,
)
from dama_asr.testing import tiny_whisper

DIMS = {"d_model": 32, "layers": 6, "heads": 2}


def _config(variant: str) -> AdapterConfig:
    # Methods with a default rank use it (dama-no-schedule: the schedule's mean; vera: 256, wider than
    # these layers, which VeRA allows); the others get rank 4. "METHOD:encoder-SCHEDULE" adapts the
    # encoder too, with that encoder schedule.
    method, _, encoder = variant.partition(":encoder-")
    rank = 4 if get_method(method).requires_rank else 0
    extra = {"encoder": True, "encoder_schedule": encoder} if encoder else {}
    return AdapterConfig(method=method, r=rank, r_high=8, r_low=2, **extra)


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 80, 3000, generator=g)
    tokens = torch.tensor([[50258, 50297, 50359, 50363, 400, 401, 402, 50257]] * 2)
    return features, tokens


def _logits(model, inputs) -> torch.Tensor:
    features, tokens = inputs
    model.eval()
    with torch.no_grad():
        return model(input_features=features, decoder_input_ids=tokens).logits


def _train_step(model, inputs) -> None:
    features, tokens = inputs
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    out = model(input_features=features, decoder_input_ids=tokens[:, :-1], labels=tokens[:, 1:])
    out.loss.backward()
    opt.step()
    opt.zero_grad()


def _fresh_base():
    return tiny_whisper(seed=1, **DIMS)[0]


STANDALONE = [m for m in method_names() if not get_method(m).builds_on_experts]
ENCODER_SCHEDULES = ["dama:encoder-rising", "dama:encoder-dama"]


@pytest.fixture(scope="module", params=STANDALONE + ENCODER_SCHEDULES)
def adapted(request, inputs):
    cfg = _config(request.param)
    base_logits = _logits(_fresh_base(), inputs)
    model = apply_adapter(_fresh_base(), cfg)
    init_logits = _logits(model, inputs)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _train_step(model, inputs)
    return cfg, model, base_logits, init_logits, before


def test_output_unchanged_at_init(adapted):
    _, _, base_logits, init_logits, _ = adapted
    torch.testing.assert_close(init_logits, base_logits, atol=2e-4, rtol=0)


def test_exactly_the_planned_parameters_train(adapted):
    cfg, model, _, _, before = adapted
    spec = get_method(cfg.method)
    config = model.config if spec.saves_full_model else model.base_model.model.config
    assert trainable_parameter_count(model) == trainable_parameters(config, cfg)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert changed <= trainable, f"frozen parameters moved: {sorted(changed - trainable)[:3]}"
    assert changed, "the training step moved nothing"
    plans = plan_modules(config, cfg)
    if spec.saves_full_model:
        assert not plans and trainable and all(n.startswith("model.decoder.") for n in trainable)
        return
    # Each planned module trains exactly the parameters its spec names, and nothing else trains.
    expected = {f"base_model.model.{row.name}.{n}" for row in plans for n in spec.trained_names(row)}
    assert trainable == expected, sorted(trainable ^ expected)[:4]


def test_merged_equals_unmerged(adapted, inputs):
    cfg, model, _, init_logits, _ = adapted
    trained = _logits(model, inputs)
    assert not torch.allclose(trained, init_logits), "the training step changed nothing"
    merged = get_method(cfg.method).merge(copy.deepcopy(model))
    assert not isinstance(merged, PeftModel)
    torch.testing.assert_close(_logits(merged, inputs), trained, atol=2e-4, rtol=0)


def test_save_load_round_trip_with_plain_peft(adapted, inputs, tmp_path):
    cfg, model, _, _, _ = adapted
    trained = _logits(model, inputs)
    folder = save_adapter(model, cfg, tmp_path / "adapter", base_model="tiny")
    loaded = load_adapted(_fresh_base(), folder)
    torch.testing.assert_close(_logits(loaded, inputs), trained, atol=2e-4, rtol=0)
    if not get_method(cfg.method).saves_full_model:
        # a user with plain peft and the ORIGINAL base weights gets the same model
        plain = PeftModel.from_pretrained(_fresh_base(), folder)
        torch.testing.assert_close(_logits(plain, inputs), trained, atol=2e-4, rtol=0)


def test_dama_middle_basis_is_trailing_and_frozen(inputs):
    model = apply_adapter(_fresh_base(), _config("dama"))
    layer = model.base_model.model.model.decoder.layers[2].fc1  # layer 3 of 6: middle
    a = layer.lora_A["default"].weight.detach().clone()
    w = layer.get_base_layer().weight.detach().double()
    s = torch.linalg.svdvals(w)
    # A's rows span the directions of the smallest singular values: |W A^T| per row equals them
    gains = (w @ a.double().T).norm(dim=0)
    torch.testing.assert_close(gains.sort().values, s[-2:].sort().values, atol=1e-5, rtol=1e-4)
    _train_step(model, inputs)
    assert torch.equal(layer.lora_A["default"].weight, a)
    assert layer.lora_B["default"].weight.abs().sum() > 0


def test_encoder_schedules_rank_the_encoder_by_depth() -> None:
    from dama_asr.adapters.config import AdapterConfigError

    config = tiny_whisper(seed=1, **DIMS)[0].config

    def ranks(cfg: AdapterConfig, side: str) -> list[tuple[int, int, bool]]:
        rows = {r.layer: (r.rank, r.train_a, r.init) for r in plan_modules(config, cfg) if r.side == side}
        return [rows[k] for k in sorted(rows)]

    rising = ranks(_config("dama:encoder-rising"), "encoder")
    assert [r[0] for r in rising] == [2, 3, 4, 6, 7, 8]  # r_low at the bottom to r_high at the top
    dama_enc = _config("dama:encoder-dama")
    assert ranks(dama_enc, "encoder") == ranks(
        dama_enc, "decoder"
    )  # the decoder's schedule, both stacks 6 deep
    assert {r[0] for r in ranks(_config("dama"), "decoder")} == {2, 5, 8}
    with pytest.raises(AdapterConfigError, match="encoder_schedule: method lora offers uniform"):
        AdapterConfig(method="lora", r=4, encoder=True, encoder_schedule="rising")
    with pytest.raises(AdapterConfigError, match="only with encoder adaptation"):
        AdapterConfig(method="dama", encoder_schedule="rising")
