"""FLEURS import on <lang>/audio/<split>/*.wav + <lang>/<split>.tsv fixture trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from dama_asr.cli import main
from dama_asr.data.importers import import_fleurs
from dama_asr.data.importers.testing import write_fleurs_tree
from dama_asr.data.manifest import ManifestError, read_manifest
from dama_asr.languages import UnknownLanguageError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleurs")
    write_fleurs_tree(
        root / "cy_gb",
        {
            "train": [
                ("1001", "111.wav", "Mae'r tywydd yn braf.", 1.0),
                ("1001", "112.wav", "Mae'r tywydd yn braf.", 1.2),
            ],
            "dev": [("1002", "121.wav", "Ble mae'r llyfrgell?", 0.9)],
            "test": [
                ("1003", "131.wav", "Diolch yn fawr iawn.", 1.1),
                ("1004", "132.wav", "Nos da.", 0),
            ],  # missing
        },
    )
    write_fleurs_tree(
        root / "ka_ge",
        {
            "train": [
                ("2001", "211.wav", "დღეს კარგი ამინდია.", 1.0),
                ("2002", "212.wav", "dghes kargi amindia.", 1.0),
            ],
            "test": [("2003", "231.wav", "გმადლობთ.", 0.7)],
        },
    )
    write_fleurs_tree(root / "cmn_hans_cn", {"test": [("3001", "311.wav", "今天天气很好。", 1.0)]})
    with open(root / "ka_ge" / "train.tsv", "a", encoding="utf-8") as f:
        f.write("2009\n")  # a malformed row
    return root


def test_imports_all_languages_with_raw_text_and_sentence_ids(root, tmp_path):
    result = import_fleurs(root, tmp_path / "out", echo=None)
    items = {u.id: u for u in read_manifest(result.manifest)}
    assert set(items) == {
        "cy_gb_111",
        "cy_gb_112",
        "cy_gb_121",
        "cy_gb_131",
        "ka_ge_211",
        "ka_ge_231",
        "cmn_hans_cn_311",
    }
    first = items["cy_gb_111"]
    assert (first.text, first.language, first.split, first.source) == (
        "Mae'r tywydd yn braf.",
        "cy",
        "train",
        "fleurs",
    )
    assert first.extra["sentence_id"] == items["cy_gb_112"].extra["sentence_id"] == "1001"
    assert first.duration == pytest.approx(1.0) and items["cy_gb_112"].duration == pytest.approx(1.2)
    assert items["cmn_hans_cn_311"].language == "zh" and items["ka_ge_231"].split == "test"
    assert items["cy_gb_121"].extra["gender"] in ("MALE", "FEMALE")
    counts = result.report.counts
    assert (counts["missing_audio"], counts["script_mismatch"], counts["malformed_line"]) == (1, 1, 1)
    assert set(result.split_manifests) == {"train", "dev", "test"}


@pytest.mark.parametrize("wanted", [["ka"], ["ka_ge"]])
def test_language_filter_by_whisper_code_or_fleurs_tag(root, tmp_path, wanted):
    result = import_fleurs(root, tmp_path / "out", languages=wanted, echo=None)
    assert {u.language for u in result.items} == {"ka"} and len(result.items) == 2


def test_a_language_folder_can_be_the_root(root, tmp_path):
    result = import_fleurs(root / "cy_gb", tmp_path / "out", splits=["dev"], echo=None)
    assert [u.id for u in result.items] == ["cy_gb_121"]


def test_errors_name_what_is_available(root, tmp_path):
    with pytest.raises(
        ManifestError, match="no FLEURS folder for language 'lt'; available: cmn_hans_cn \\(zh\\)"
    ):
        import_fleurs(root, tmp_path / "out", languages=["lt"], echo=None)
    with pytest.raises(ManifestError, match="no dev.tsv; present: test"):
        import_fleurs(root, tmp_path / "out", languages=["zh"], splits=["dev"], echo=None)
    unsupported = tmp_path / "other"
    write_fleurs_tree(unsupported / "ast_es", {"test": [("1", "1.wav", "Bonos díes.", 1.0)]})
    with pytest.raises(UnknownLanguageError, match="'ast_es'"):
        import_fleurs(unsupported, tmp_path / "out", echo=None)
    assert not (tmp_path / "out").exists()


def test_relative_paths_from_a_parent_folder_survive_check(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_fleurs_tree(Path("fleurs/cy_gb"), {"train": [("1", "1.wav", "Mae'r tywydd yn braf.", 1.0)]})
    assert main(["data", "import", "fleurs", "fleurs", "--out", "data"]) == 0
    assert main(["data", "check", "data/manifest.jsonl"]) == 0
    monkeypatch.chdir(tmp_path / "fleurs")
    assert main(["data", "check", str(tmp_path / "data" / "train.jsonl")]) == 0
