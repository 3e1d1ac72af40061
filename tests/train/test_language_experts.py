"""`dama train --method experts` and `--method mole` end to end on the tiny model (real audio, tokenizer)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from dama_asr.adapters import load_adapted
from dama_asr.adapters.mole import mole_of
from dama_asr.adapters.sets import AdapterSet
from dama_asr.backbone.loading import load_backbone
from dama_asr.cli import main
from dama_asr.data.audio import load_audio
from dama_asr.data.manifest import read_manifest, write_manifest
from dama_asr.inference.decoding import DecodingOptions
from dama_asr.inference.mole_decoding import router_languages, transcribe_mole
from dama_asr.testing import tiny_manifest
from dama_asr.train.metrics_log import read_log

LANGUAGES = ("cy", "en", "lt")


@pytest.fixture(scope="module")
def multilingual(tmp_path_factory) -> tuple[Path, Path]:
    """Train and dev manifests of three languages, tone clips of different pitch per language."""
    root = tmp_path_factory.mktemp("multi")
    items = []
    for k, lang in enumerate(LANGUAGES):
        manifest = tiny_manifest(
            root / lang, n=4, language=lang, texts=[f"{lang} one {k}", f"{lang} two three"] * 2
        )
        items += [dataclasses.replace(i, id=f"{lang}-{i.id}") for i in read_manifest(manifest)]
    train = write_manifest(root / "train.jsonl", items, relative=False)
    dev = write_manifest(root / "dev.jsonl", items[::2], relative=False)
    return train, dev


@pytest.fixture(scope="module")
def experts_run(multilingual, tmp_path_factory) -> Path:
    train, dev = multilingual
    out = tmp_path_factory.mktemp("experts") / "run"
    args = ["train", "--model", "tiny-random", "--method", "experts", "--train", str(train), "--dev", str(dev),
            "--out", str(out), "--r", "2", "--epochs", "1", "--batch-size", "2", "--no-progress", "--max-dev", "2"]  # fmt: skip
    assert main(args) == 0
    return out


def test_experts_train_one_adapter_per_language_into_a_set(experts_run: Path, multilingual, capsys) -> None:
    expert_set = AdapterSet.load(experts_run / "experts")
    assert expert_set.languages == sorted(LANGUAGES)
    for lang in LANGUAGES:
        run = json.loads((experts_run / "runs" / lang / "summary.json").read_text())
        assert run["train_utterances"] == 4  # its own language only
        assert not run["encoder_cache"]  # encoder and decoder, the paper's experts
        assert expert_set.member(lang)["metrics"]["dev_wer"] == run["best_dev_wer"]
    summary = json.loads((experts_run / "experts_summary.json").read_text())
    assert summary["trainable_parameters"] == 3 * run["trainable_parameters"]
    capsys.readouterr()
    # Rerun: every language is finished, nothing trains again; the set is rebuilt identically.
    before = (experts_run / "experts" / "checksums.json").read_bytes()
    steps = {lang: len(read_log(experts_run / "runs" / lang / "train_log.jsonl")) for lang in LANGUAGES}
    train, dev = multilingual
    assert main(["train", "--model", "tiny-random", "--method", "experts", "--train", str(train), "--dev", str(dev),
                 "--out", str(experts_run), "--r", "2", "--epochs", "1", "--batch-size", "2", "--no-progress",
                 "--max-dev", "2"]) == 0  # fmt: skip
    assert (experts_run / "experts" / "checksums.json").read_bytes() == before
    assert steps == {
        lang: len(read_log(experts_run / "runs" / lang / "train_log.jsonl")) for lang in LANGUAGES
    }


def test_experts_refuse_a_language_the_manifest_lacks(multilingual, tmp_path: Path, capsys) -> None:
    train, _ = multilingual
    code = main(["train", "--model", "tiny-random", "--method", "experts", "--train", str(train),
                 "--out", str(tmp_path / "x"), "--languages", "fr", "--no-progress"])  # fmt: skip
    assert code == 2 and "no training utterances for fr" in capsys.readouterr().err


def test_mole_trains_the_mix_and_router_and_routes_at_inference(experts_run: Path, multilingual, tmp_path):
    train, dev = multilingual
    out = tmp_path / "mole"
    args = ["train", "--model", "tiny-random", "--method", "mole", "--experts", str(experts_run), "--l1", "1",
            "--router-hidden", "8", "--train", str(train), "--dev", str(dev), "--out", str(out), "--epochs", "2",
            "--batch-size", "3", "--lr", "0.05", "--no-progress", "--max-dev", "2", "--json"]  # fmt: skip
    assert main(args) == 0
    log = read_log(out / "train_log.jsonl")
    assert log and all(set(r["loss_terms"]) == {"token", "router"} for r in log)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trainable_parameters"] < 2000  # the mix (1 x 3) and an 8-wide router only
    backbone = load_backbone("tiny-random")
    model = load_adapted(backbone.model, out / "best")
    assert mole_of(model).languages == sorted(LANGUAGES)
    from dama_asr.backbone.loading import Backbone

    mole = Backbone(model, backbone.processor, "mole", "no").ready_for_inference()
    items = read_manifest(dev)
    audios = [load_audio(i.audio) for i in items]
    routed = router_languages(mole, audios)
    assert len(routed) == len(items) and set(routed) <= set(LANGUAGES)
    agnostic = transcribe_mole(mole, audios, None, DecodingOptions())
    assert [t.language for t in agnostic] == routed
    aware = transcribe_mole(mole, audios, [i.language for i in items], DecodingOptions())
    assert [t.language for t in aware] == [i.language for i in items]
    # Language-aware decoding of one utterance alone equals its row in the mixed call.
    alone = transcribe_mole(mole, audios[:1], [items[0].language], DecodingOptions())
    assert alone[0].tokens == aware[0].tokens
    assert torch.is_tensor(mole_of(model).mix.weights)


@pytest.mark.parametrize("kd", ["layerwise", "output"])
def test_kd_student_distils_the_experts_into_one_peft_lora(experts_run: Path, multilingual, tmp_path, kd):
    train, dev = multilingual
    out = tmp_path / f"student-{kd}"
    args = ["train", "--model", "tiny-random", "--method", "kd-student", "--experts", str(experts_run),
            "--r", "8", "--kd", kd, "--train", str(train), "--dev", str(dev), "--out", str(out), "--epochs", "1",
            "--batch-size", "2", "--no-progress", "--max-dev", "2"]  # fmt: skip
    assert main(args) == 0
    config = (out / "config.yaml").read_text()
    assert "objective: distill" in config and "sampler: language-homogeneous" in config
    terms = set(read_log(out / "train_log.jsonl")[0]["loss_terms"])
    assert terms == ({"token", "js", "hidden"} if kd == "layerwise" else {"token", "js"})
    # The student is one standard peft LoRA on the experts' targets (encoder and decoder here).
    from peft import PeftModel

    student = PeftModel.from_pretrained(load_backbone("tiny-random").model, out / "final")
    names = [n for n, _ in student.named_parameters() if "lora_A" in n]
    assert any(".encoder." in n for n in names) and any(".decoder." in n for n in names)


def test_evaluating_a_mole_records_how_its_router_routed(experts_run: Path, multilingual, tmp_path):
    from dama_asr.backbone.loading import Backbone
    from dama_asr.evaluate import EvaluationError, evaluate_items

    train, dev = multilingual
    out = tmp_path / "mole"
    assert main(["train", "--model", "tiny-random", "--method", "mole", "--experts", str(experts_run),
                 "--router-hidden", "8", "--train", str(train), "--dev", "", "--out", str(out), "--epochs", "1",
                 "--batch-size", "3", "--no-progress"]) == 0  # fmt: skip
    backbone = load_backbone("tiny-random")
    mole = Backbone(
        load_adapted(backbone.model, out / "final"), backbone.processor, "mole", "no"
    ).ready_for_inference()
    items = read_manifest(dev)
    agnostic = evaluate_items(mole, items, route="router", force_language=False)
    decoded = {u["id"]: u["decoded_language"] for u in agnostic["utterances"]}
    right = sum(decoded[i.id] == i.language for i in items)
    assert agnostic["routing"]["accuracy"] == pytest.approx(right / len(items))
    assert sum(sum(row.values()) for row in agnostic["routing"]["confusion"].values()) == len(items)
    aware = evaluate_items(mole, items, route="given")
    assert aware["routing"]["route"] == "given" and aware["routing"]["accuracy"] is None
    with pytest.raises(EvaluationError, match="a MoLE routes by"):
        evaluate_items(mole, items, route="whisper-lid")


def test_eval_and_transcribe_take_a_mole_folder(experts_run: Path, multilingual, tmp_path, capsys):
    train, dev = multilingual
    out = tmp_path / "mole"
    assert main(["train", "--model", "tiny-random", "--method", "mole", "--experts", str(experts_run),
                 "--router-hidden", "8", "--train", str(train), "--dev", "", "--out", str(out), "--epochs", "1",
                 "--batch-size", "3", "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    result = tmp_path / "eval.json"
    assert main(["eval", "--model", "tiny-random", "--adapter", str(out / "final"), "--manifest", str(dev),
                 "--route", "router", "--detect-language", "--out", str(result)]) == 0  # fmt: skip
    assert "routing: router" in capsys.readouterr().out
    assert json.loads(result.read_text())["routing"]["route"] == "router"
    clip = read_manifest(dev)[0].audio
    assert (
        main(["transcribe", "--model", "tiny-random", "--adapter", str(out / "final"), clip, "--json"]) == 0
    )
    captured = capsys.readouterr()
    assert (
        "router picks" in captured.err and json.loads(captured.out.splitlines()[0])["language"] in LANGUAGES
    )
