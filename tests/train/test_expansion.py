"""LoRA-Whisper on the tiny model: `dama train --method lora-whisper` and `dama expand` (random, warm, moe)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from dama_asr.adapters import apply_adapter, trainable_parameter_count
from dama_asr.adapters.config import DECODER_LINEARS, AdapterConfig
from dama_asr.adapters.plan import plan_modules
from dama_asr.adapters.sets import AdapterSet
from dama_asr.backbone.loading import load_backbone
from dama_asr.cli import build_parser, main
from dama_asr.data.manifest import read_manifest, write_manifest
from dama_asr.testing import save_tiny_whisper, tiny_manifest
from dama_asr.train import TrainConfig, Trainer
from dama_asr.train.expansion import (
    ExpansionError,
    ExpansionOptions,
    member_adapter,
    new_language_adapter,
    similarity_ranking,
)
from dama_asr.train_systems import system_overrides

LANGUAGES = ("cy", "en")
TRAIN = ["--epochs", "1", "--batch-size", "3", "--no-progress", "--max-dev", "2"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """Train/dev manifests of cy and en (4 clips each) and a new language, lt (6 clips)."""
    root = tmp_path_factory.mktemp("corpus")
    items = []
    for k, lang in enumerate(LANGUAGES):
        manifest = tiny_manifest(
            root / lang, n=4, language=lang, texts=[f"{lang} one {k}", f"{lang} two"] * 2
        )
        items += [dataclasses.replace(i, id=f"{lang}-{i.id}") for i in read_manifest(manifest)]
    return {
        "train": write_manifest(root / "train.jsonl", items, relative=False),
        "dev": write_manifest(root / "dev.jsonl", items[::2], relative=False),
        "en": write_manifest(root / "en.jsonl", [i for i in items if i.language == "en"], relative=False),
        "lt": tiny_manifest(root / "lt", n=6, language="lt", texts=[f"lt zodis {i}" for i in range(6)]),
    }


@pytest.fixture(scope="module")
def lora_whisper(corpus, tmp_path_factory) -> Path:
    """A `dama train --method lora-whisper` run (rank 2): its set is run/experts."""
    out = tmp_path_factory.mktemp("lw") / "run"
    args = ["train", "--model", "tiny-random", "--method", "lora-whisper", "--train", str(corpus["train"]),
            "--dev", str(corpus["dev"]), "--out", str(out), "--r", "2", "--epochs", "1", "--batch-size", "2",
            "--no-progress", "--max-dev", "2"]  # fmt: skip
    assert main(args) == 0
    return out


def _base():
    return load_backbone("tiny-random", precision="no").model


def _logits(model) -> torch.Tensor:
    model.eval()
    features = torch.randn(2, 80, 3000, generator=torch.Generator().manual_seed(0))
    prompt = torch.tensor([[50258, 50368, 50359, 50363, 400, 401]] * 2)
    with torch.no_grad():
        return model(input_features=features, decoder_input_ids=prompt).logits


def _files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def _member(lw: Path, code: str) -> Path:
    return lw / "experts" / code


def test_lora_whisper_defaults_are_the_papers_placement() -> None:
    args = build_parser().parse_args(["train", "--method", "lora-whisper", "--train", "t.jsonl"])
    args = system_overrides(args)
    assert (args.system, args.method, args.r, args.encoder, args.targets) == (
        "lora-whisper",
        "lora",
        32,
        True,
        "all",
    )
    given = system_overrides(build_parser().parse_args(
        ["train", "--method", "lora-whisper", "--train", "t.jsonl", "--r", "8", "--targets", "qv"]))  # fmt: skip
    assert (given.r, given.targets) == (8, "qv")


def test_lora_whisper_trains_one_lora_per_language_on_encoder_and_decoder(lora_whisper: Path) -> None:
    experts = AdapterSet.load(lora_whisper / "experts")
    assert experts.languages == list(LANGUAGES)
    every_linear = {row.name for row in plan_modules(
        _base().config, AdapterConfig(method="lora", r=2, encoder=True, targets=("all",)))}  # fmt: skip
    assert any(".encoder." in n for n in every_linear) and any(".decoder." in n for n in every_linear)
    for code in LANGUAGES:
        weights = load_file(str(_member(lora_whisper, code) / "adapter_model.safetensors"))
        modules = {k.removeprefix("base_model.model.").rsplit(".lora_", 1)[0] for k in weights}
        assert modules == every_linear  # encoder and decoder, every linear
        assert json.loads((_member(lora_whisper, code) / "adapter_config.json").read_text())["r"] == 2
        run = json.loads((lora_whisper / "runs" / code / "summary.json").read_text())
        assert run["train_utterances"] == 4 and not run["encoder_cache"]


def test_similarity_is_normalised_sorted_and_refused_on_too_little_audio(corpus, tmp_path: Path) -> None:
    backbone = load_backbone("tiny-random", precision="no")
    items = read_manifest(corpus["lt"])
    found = similarity_ranking(backbone, items, ["cy", "en", "fr"], limit=4, minimum=2)
    probabilities = [row["probability"] for row in found["ranking"]]
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    assert probabilities == sorted(probabilities, reverse=True) and len(set(probabilities)) == 3
    assert {row["language"] for row in found["ranking"]} == {"cy", "en", "fr"}
    assert len(found["utterances"]) == 4  # at most `limit`
    broken = [dataclasses.replace(i, audio=str(tmp_path / f"gone{k}.wav")) for k, i in enumerate(items[:4])]
    with pytest.raises(ExpansionError, match=r"2 readable utterance\(s\) of 6 \(4 unreadable\).*at least 5"):
        similarity_ranking(backbone, broken + items[4:], ["cy", "en"], minimum=5)


def _adapter(lw: Path, ranking: dict[str, float], **options):
    rows = [{"language": c, "probability": p} for c, p in ranking.items()]
    experts = AdapterSet.load(lw / "experts")
    return new_language_adapter(lw / "experts", experts, rows, ExpansionOptions(**options), _base().config)


def _factors(model) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    from peft.tuners.lora import LoraLayer

    return {name.removeprefix("base_model.model."): (m.lora_A["default"].weight, m.lora_B["default"].weight)
            for name, m in model.named_modules() if isinstance(m, LoraLayer)}  # fmt: skip


def test_random_and_warm_take_the_members_config_and_warm_starts_at_the_nearest(lora_whisper: Path) -> None:
    random_cfg, started = _adapter(lora_whisper, {"en": 0.6, "cy": 0.4}, init="random")
    assert started == {"members": [], "gates": []} and not random_cfg.extra
    assert random_cfg == member_adapter(_member(lora_whisper, "en"), _base().config)
    assert (random_cfg.r, random_cfg.encoder) == (2, True) and random_cfg.target_linears() == DECODER_LINEARS
    warm_cfg, started = _adapter(lora_whisper, {"en": 0.6, "cy": 0.4}, init="warm")
    assert started["members"] == ["en"]
    warm = apply_adapter(_base(), warm_cfg)
    member = PeftModel.from_pretrained(_base(), _member(lora_whisper, "en"))
    expected = _factors(member)
    assert set(_factors(warm)) == set(expected)
    for name, (a, b) in _factors(warm).items():
        assert torch.equal(a, expected[name][0]) and torch.equal(b, expected[name][1]), name
        assert a.requires_grad and b.requires_grad  # warm start: all of it trains
    assert torch.equal(_logits(warm), _logits(member))
    fresh = apply_adapter(_base(), random_cfg)
    assert not any(torch.equal(a, expected[n][0]) for n, (a, _) in _factors(fresh).items())


def test_moe_starts_at_the_base_plus_the_gated_members(lora_whisper: Path) -> None:
    cfg, started = _adapter(lora_whisper, {"cy": 0.6, "en": 0.2}, init="moe", top_k=2)
    assert started["members"] == ["cy", "en"] and started["gates"] == pytest.approx([0.75, 0.25])
    assert cfg.r == 6  # (k + 1) r
    model = apply_adapter(_base(), cfg)
    reference = _base()
    with torch.no_grad():
        for code, gate in zip(started["members"], started["gates"], strict=True):
            member = PeftModel.from_pretrained(_base(), _member(lora_whisper, code))
            for name, module in member.base_model.model.named_modules():
                if name in _factors(model):
                    reference.get_submodule(name).weight += gate * module.get_delta_weight("default")
    torch.testing.assert_close(_logits(model), _logits(reference), rtol=0, atol=1e-5)
    assert not torch.equal(_logits(model), _logits(_base()))
    # Only the own rank-2 block trains: as many parameters as one member has.
    member = PeftModel.from_pretrained(_base(), _member(lora_whisper, "cy"), is_trainable=True)
    assert trainable_parameter_count(model) == trainable_parameter_count(member)


@pytest.mark.parametrize("gates", ["similarity", "learned"])
def test_moe_member_loaded_in_plain_peft_is_the_trained_model(lora_whisper: Path, corpus, tmp_path, gates):
    adapter, started = _adapter(lora_whisper, {"cy": 0.6, "en": 0.4}, init="moe", top_k=2, gates=gates)
    config = TrainConfig.from_dict({
        "model": "tiny-random", "train": str(corpus["lt"]), "output_dir": str(tmp_path / "run"),
        "optim": {"epochs": 1, "batch_size": 3, "lr": 0.05, "warmup_steps": 0}, "progress_bar": False,
        "precision": "no",  # float32 base, as the plain peft model below: the same model, or not
    })  # fmt: skip
    trainer = Trainer(dataclasses.replace(config, adapter=adapter))
    summary = trainer.run()
    assert summary["steps"] == 2
    trained = _logits(trainer.model)
    saved = tmp_path / "run" / "final"
    plain = PeftModel.from_pretrained(_base(), saved)
    torch.testing.assert_close(_logits(plain), trained, rtol=0, atol=1e-6)
    weights = load_file(str(saved / "adapter_model.safetensors"))
    members = [
        load_file(str(_member(lora_whisper, c) / "adapter_model.safetensors")) for c in started["members"]
    ]
    moved = []
    for key, value in weights.items():
        blocks = [m[key] for m in members]
        if ".lora_A." in key:  # the members' rows of A did not move
            assert torch.equal(value[:4], torch.cat(blocks)), key
            continue
        assert value[:, 4:].abs().max() > 0  # the own block of B trained from zero
        for k, (block, gate) in enumerate(zip(blocks, started["gates"], strict=True)):
            saved = value[:, 2 * k : 2 * k + 2]  # member k's columns: its B times one scalar, the gate
            scalar = float((saved * block).sum() / (block * block).sum())
            torch.testing.assert_close(saved, scalar * block, rtol=1e-5, atol=1e-9)
            moved.append(abs(scalar - gate))
    # fixed gates stay at the similarity, learned ones train
    assert (max(moved) < 1e-6) if gates == "similarity" else (max(moved) > 1e-4)


def test_expand_adds_a_member_and_leaves_the_others_bit_identical(
    lora_whisper: Path, corpus, tmp_path, capsys
):
    source = lora_whisper / "experts"
    before = _files(source)
    out = tmp_path / "expanded"
    capsys.readouterr()
    args = ["expand", str(lora_whisper), "--language", "lt", "--train", str(corpus["lt"]), "--dev",
            str(corpus["lt"]), "--out", str(out), "--init", "moe", "--top-k", "2", *TRAIN]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "similarity of lt's audio" in printed and "start: moe over " in printed
    assert _files(source) == before  # the original set was only read
    expanded = AdapterSet.load(out / "experts")
    original = AdapterSet.load(source)
    assert expanded.languages == [*LANGUAGES, "lt"]
    after = _files(out / "experts")
    for code in LANGUAGES:
        assert {k: v for k, v in after.items() if k.startswith(f"{code}/")} == {
            k: v for k, v in before.items() if k.startswith(f"{code}/")
        }
        assert expanded.member(code) == original.member(code)
    for code in LANGUAGES:  # outputs too: each base member decodes bit for bit as before
        old, new = original.load_into(_base(), [code]), expanded.load_into(_base(), [code])
        assert torch.equal(_logits(old), _logits(new))
    config = json.loads((out / "experts" / "lt" / "adapter_config.json").read_text())
    assert config["r"] == 6
    similarity = json.loads((out / "similarity.json").read_text())
    probabilities = [row["probability"] for row in similarity["ranking"]]
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5) and probabilities == sorted(probabilities)[::-1]
    summary = json.loads((out / "expansion.json").read_text())
    assert summary["status"] == "finished" and summary["start"]["members"] == [
        r["language"] for r in similarity["ranking"]
    ]


def test_replace_retrains_a_member_from_random_and_keeps_the_other(
    lora_whisper: Path, corpus, tmp_path
) -> None:
    source = lora_whisper / "experts"
    out = tmp_path / "replaced"
    args = ["expand", str(source), "--language", "en", "--train", str(corpus["en"]), "--out", str(out),
            "--init", "random", "--replace", "--min-utterances", "4", *TRAIN]  # fmt: skip
    assert main(args) == 0
    expanded = AdapterSet.load(out / "experts")
    assert expanded.languages == ["cy", "en"]
    assert _files(out / "experts" / "cy") == _files(source / "cy")
    assert _files(out / "experts" / "en") != _files(source / "en")
    similarity = json.loads((out / "similarity.json").read_text())
    assert [row["language"] for row in similarity["ranking"]] == ["cy"]  # en is not compared with itself


def test_an_interrupted_expansion_resumes_from_its_last_checkpoint(
    lora_whisper: Path, corpus, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "resumed"
    args = ["expand", str(lora_whisper), "--language", "lt", "--train", str(corpus["lt"]), "--out", str(out),
            "--init", "warm", "--epochs", "2", "--batch-size", "3", "--no-progress", "--precision", "no",
            "--set", "checkpoint_every=1"]  # fmt: skip
    env = {**os.environ, "DAMA_CRASH_AT": "step@3", "OMP_NUM_THREADS": "1", "DAMA_ALLOCATOR": "system"}
    killed = subprocess.run([sys.executable, "-m", "dama_asr.cli", *args], env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILLed mid-step 3: checkpoint 2 is on disk
    assert json.loads((out / "expansion.json").read_text())["status"] == "started"
    assert not (out / "experts").exists()
    capsys.readouterr()
    assert main(args) == 2 and "already exists" in capsys.readouterr().err  # not resumed unless asked
    other = [a if a != "warm" else "random" for a in args]
    assert main([*other, "--resume"]) == 2
    assert "holds another expansion (init 'warm')" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    summary = json.loads((out / "expansion.json").read_text())
    assert summary["status"] == "finished" and summary["run"]["resumed_from"].endswith("2")
    assert summary["run"]["steps"] == 4  # 2 epochs of 2 batches: the first two were not trained again
    assert AdapterSet.load(out / "experts").languages == [*LANGUAGES, "lt"]
    assert main([*args, "--resume"]) == 0  # a finished expansion is returned as it is
    assert json.loads((out / "expansion.json").read_text()) == summary


def test_expand_refusals(lora_whisper: Path, corpus, tmp_path: Path, capsys) -> None:
    source = str(lora_whisper / "experts")

    def refused(
        *extra: str, language: str = "lt", train: Path = corpus["lt"], out: Path = tmp_path / "x"
    ) -> str:
        capsys.readouterr()
        code = main(["expand", source, "--language", language, "--train", str(train), "--out", str(out),
                     *extra, *TRAIN])  # fmt: skip
        assert code == 2
        return capsys.readouterr().err

    assert "already has cy; pass --replace" in refused(language="cy", train=corpus["train"])
    other_base = save_tiny_whisper(tmp_path / "other-base", seed=1)
    assert "fingerprint" in refused("--model", str(other_base))
    short = tiny_manifest(tmp_path / "short", n=3, language="lt")
    assert "3 readable utterance(s) of 3" in refused(train=short)
    assert "top_k: 3, but" in refused("--init", "moe", "--top-k", "3")
    assert not (tmp_path / "x").exists()  # nothing was written for a refused expansion
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert "already exists" in refused(out=taken)
    assert "only a folder `dama expand` wrote" in refused("--force", out=taken)
    assert (taken / "notes.txt").read_text() == "mine"
    with pytest.raises(ExpansionError, match="init: one of random, warm, moe"):
        ExpansionOptions(init="mix")
