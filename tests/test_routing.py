"""Per-utterance routing: each utterance of a mixed batch decodes exactly as its adapter alone would."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from dama_asr.adapters.sets import AdapterSet, AdapterSetError, adapter_set_backbone
from dama_asr.backbone.loading import Backbone, load_backbone
from dama_asr.inference.decoding import DecodingOptions, transcribe
from dama_asr.inference.routing import GROUPED, MIXED, choose_route, generate_routed, transcribe_routed
from dama_asr.testing import tiny_whisper, tone

LANGUAGES = ["cy", "en", "en", "cy", "en"]


def _adapted(seed: int, dora: bool) -> PeftModel:
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "fc1"], use_dora=dora)
    model = get_peft_model(tiny_whisper()[0], config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # random factors: each adapter decodes differently
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif "lora_magnitude" in name:  # DoRA keeps |W| per column: grow it, or nothing changes
                p.mul_(1 + 10 * torch.rand(p.shape, generator=g))
    return model.eval()


def _set(folder: Path, dora: bool) -> Path:
    adapter_set = AdapterSet.for_base(tiny_whisper()[0], "tiny-random")
    adapter_set.add("cy", _adapted(1, dora))
    adapter_set.add("en", _adapted(2, dora))
    return adapter_set.save(folder)


@pytest.fixture(scope="module")
def lora_set(tmp_path_factory) -> Path:
    return _set(tmp_path_factory.mktemp("lora") / "set", dora=False)


@pytest.fixture(params=["lora", "dora"])
def set_dir(request, lora_set, tmp_path) -> Path:
    return lora_set if request.param == "lora" else _set(tmp_path / "set", dora=True)


def _alone(set_dir: Path, language: str) -> PeftModel:
    """The member loaded by itself with plain peft: the reference routing must reproduce."""
    return PeftModel.from_pretrained(tiny_whisper()[0], set_dir / language).eval()


def _features(n: int) -> torch.Tensor:
    return torch.randn(n, 80, 3000, generator=torch.Generator().manual_seed(0))  # (B, mels, frames)


def _alone_rows(set_dir: Path, features: torch.Tensor, adapter: str, language: str) -> torch.Tensor:
    with torch.no_grad():
        return _alone(set_dir, adapter).generate(
            input_features=features, language=language, num_beams=1, max_new_tokens=8,
            force_unique_generate_call=True,
        )  # fmt: skip


def test_a_mixed_batch_gives_each_row_its_adapters_output_on_both_paths(set_dir):
    model = AdapterSet.load(set_dir).load_into(tiny_whisper()[0])
    dora = model.peft_config["cy"].use_dora
    features = _features(len(LANGUAGES))
    # peft mixes plain LoRA in one batch and refuses DoRA, so a DoRA set takes the grouped path.
    assert choose_route(model, LANGUAGES) == (GROUPED if dora else MIXED)
    # The chosen path, and for LoRA the grouped one too: both must match each adapter alone.
    outputs = {"chosen": generate_routed(model, LANGUAGES, input_features=features, max_new_tokens=8)}
    if not dora:
        outputs[GROUPED] = generate_routed(
            model, LANGUAGES, input_features=features, route=GROUPED, max_new_tokens=8
        )
    for language in ("cy", "en"):
        rows = [i for i, lang in enumerate(LANGUAGES) if lang == language]
        expected = _alone_rows(set_dir, features[rows], language, language)
        for route, out in outputs.items():
            assert torch.equal(out[rows], expected), (route, language)
    # Routing matters: the other language's adapter decodes these rows differently.
    cy_rows = [i for i, lang in enumerate(LANGUAGES) if lang == "cy"]
    assert not torch.equal(_alone_rows(set_dir, features[cy_rows], "en", "cy"), outputs["chosen"][cy_rows])
    assert model.active_adapter == "cy"  # the grouped path put the active adapter back
    if dora:
        with pytest.raises(ValueError, match="DoRA"):
            generate_routed(model, LANGUAGES, input_features=features, route=MIXED, max_new_tokens=8)


def test_merged_long_form_and_single_language_batches_take_the_grouped_path(tmp_path):
    model = AdapterSet.load(_set(tmp_path / "set", dora=False)).load_into(tiny_whisper()[0])
    assert choose_route(model, ["cy", "en"]) == MIXED
    assert choose_route(model, ["cy", "en"], long_form=True) == GROUPED
    assert choose_route(model, ["en", "en"]) == GROUPED
    model.merge_adapter(["cy"])
    assert choose_route(model, ["cy", "en"]) == GROUPED


def _fresh_backbone_with(set_dir: Path, languages: list[str] | None = None) -> Backbone:
    # A fresh tiny backbone each time: peft injects its layers into the model it is given.
    return adapter_set_backbone(load_backbone("tiny-random", precision="no"), set_dir, languages)


def test_transcribe_routed_gives_each_clip_the_transcript_of_its_adapter_alone(lora_set):
    set_dir = lora_set
    routed = _fresh_backbone_with(set_dir)
    # A clip over 30 s is decoded long-form, per utterance, with its adapter active.
    audios = [tone(1.0, 300), tone(2.0, 500), tone(31.0, 700), tone(0.5, 400), tone(1.5, 600)]
    options = DecodingOptions(batch_size=2)
    grads = [p.requires_grad for p in routed.model.parameters()]
    assert choose_route(routed.model, LANGUAGES) == MIXED  # plain LoRA: the short clips share batches
    out = transcribe_routed(routed, audios, LANGUAGES, options)
    grouped = transcribe_routed(_fresh_backbone_with(set_dir), audios, LANGUAGES, options, route=GROUPED)
    assert [t.tokens for t in out] == [t.tokens for t in grouped]
    assert [t.language for t in out] == LANGUAGES
    assert [t.long_form for t in out] == [False, False, True, False, False]
    for language in ("cy", "en"):
        alone = _fresh_backbone_with(set_dir, [language])
        idx = [i for i, lang in enumerate(LANGUAGES) if lang == language]
        expected = transcribe(alone, [audios[i] for i in idx], options, languages=[language] * len(idx))
        assert [out[i].tokens for i in idx] == [t.tokens for t in expected]
    # Routing matters: with every clip through the "cy" adapter the "en" clips decode differently.
    short = [0, 1, 3, 4]
    all_cy = transcribe(_fresh_backbone_with(set_dir, ["cy"]), [audios[i] for i in short], options,
                        languages=[LANGUAGES[i] for i in short])  # fmt: skip
    assert [t.tokens for t in all_cy] != [out[i].tokens for i in short]
    assert routed.model.active_adapter == "cy"
    assert [p.requires_grad for p in routed.model.parameters()] == grads


def test_routing_names_what_is_missing(lora_set):
    routed = _fresh_backbone_with(lora_set)
    with pytest.raises(AdapterSetError, match="no adapter for language 'ka'; the model holds cy, en"):
        transcribe_routed(routed, [tone(0.5)], ["ka"])
    with pytest.raises(AdapterSetError, match="a language per utterance"):
        transcribe_routed(routed, [tone(0.5)], [None])
    with pytest.raises(AdapterSetError, match="1 languages for 2 clips"):
        transcribe_routed(routed, [tone(0.5), tone(0.5)], ["cy"])
    with pytest.raises(AdapterSetError, match="holding named adapters"):
        transcribe_routed(load_backbone("tiny-random", precision="no"), [tone(0.5)], ["cy"])


def test_dama_eval_with_an_adapter_set_scores_each_language_with_its_own_adapter(lora_set, tmp_path) -> None:
    """`dama eval --adapter-set` on a mixed manifest = each language scored alone with its member."""
    import json

    from dama_asr.cli import main
    from dama_asr.data.manifest import read_manifest, write_manifest
    from dama_asr.testing import tiny_manifest

    cy = read_manifest(tiny_manifest(tmp_path / "cy", n=2, language="cy"))
    en = read_manifest(
        tiny_manifest(tmp_path / "en", n=2, language="en", texts=["good morning", "thank you"])
    )
    en = [type(u)(**{**u.__dict__, "id": f"en-{u.id}"}) for u in en]
    mixed = write_manifest(tmp_path / "mixed.jsonl", [*cy, *en])
    base = ["eval", "--model", "tiny-random", "--precision", "no"]
    assert (
        main(
            [
                *base,
                "--manifest",
                str(mixed),
                "--adapter-set",
                str(lora_set),
                "--out",
                str(tmp_path / "m.json"),
            ]
        )
        == 0
    )
    routed = {u["id"]: u["hypothesis"] for u in json.loads((tmp_path / "m.json").read_text())["utterances"]}
    alone = {}
    for code, items in (("cy", cy), ("en", en)):
        manifest = write_manifest(tmp_path / f"{code}.jsonl", items)
        out = tmp_path / f"{code}.json"
        assert (
            main([*base, "--manifest", str(manifest), "--adapter", str(lora_set / code), "--out", str(out)])
            == 0
        )
        alone.update({u["id"]: u["hypothesis"] for u in json.loads(out.read_text())["utterances"]})
    assert routed == alone and len(routed) == 4
    assert len(set(routed.values())) > 1  # the two adapters really decode differently
