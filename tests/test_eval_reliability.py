"""Evaluation numbers that used to be wrong instead of errors (issue 14): each test fails on the old code."""

import json
import math
import re

import pytest

from dama_asr.cli import main
from dama_asr.data.manifest import read_manifest
from dama_asr.evaluate import EvaluationError, evaluate_items, parse_max_skipped, write_result
from dama_asr.inference.decoding import DecodingOptions
from dama_asr.languages import UnknownLanguageError
from dama_asr.testing import tiny_manifest, write_tone


def _append(manifest, *records, blank_line=False):
    with open(manifest, "a") as f:
        if blank_line:
            f.write("\n")
        for record in records:
            f.write(json.dumps({"language": "cy", "text": "bore da", **record}) + "\n")
    return manifest


def _strict_json(path):
    """json.loads that refuses Infinity/NaN, which Python's json would otherwise accept."""

    def refuse(name):
        raise AssertionError(f"non-finite {name} in {path}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _error(stderr: str) -> str:
    """The CLI's one error line, without the progress bars that share stderr."""
    return next(line for line in re.split(r"[\r\n]", stderr) if line.startswith("error: "))


def _eval(manifest, out, *extra):
    return main(["eval", "--manifest", str(manifest), "--model", "tiny-random", "--out", str(out), *extra])


def test_every_audio_missing_is_an_error_not_a_perfect_score(tmp_path, capsys):
    manifest = _append(
        tmp_path / "m.jsonl", {"id": "a", "audio": "gone/a.wav"}, {"id": "b", "audio": "gone/b.wav"}
    )
    # Even with every item allowed to be skipped, a WER over nothing is not 0.0%.
    assert _eval(manifest, tmp_path / "res.json", "--max-skipped", "100%") == 2
    err = _error(capsys.readouterr().err)
    assert err.startswith(f"error: {manifest}: nothing to score, all 2 item(s) were skipped.")
    assert "unreadable audio: 2 (e.g. " in err and "a.wav: file not found" in err
    assert not (tmp_path / "res.json").exists()


def test_skipped_items_are_an_error_by_default_and_before_transcription(tmp_path, capsys):
    manifest = _append(tiny_manifest(tmp_path / "c", n=3), {"id": "gone", "audio": "audio/missing.wav"})
    out = tmp_path / "res.json"
    assert _eval(manifest, out) == 2
    stderr = capsys.readouterr().err
    err = _error(stderr)
    assert "1 of 4 item(s) skipped (25.0%), but max_skipped allows at most 0 item(s)" in err
    assert "missing.wav: file not found" in err and "--max-skipped N" in err
    assert "transcribing" not in stderr and not out.exists()  # no decoding time spent on a doomed run
    assert _eval(manifest, out, "--max-skipped", "20%") == 2  # 25 % > 20 %
    capsys.readouterr()

    assert _eval(manifest, out, "--max-skipped", "25%") == 0
    printed = capsys.readouterr().out
    assert "skipped 1 item(s) of 4 (25.0%); scored 3" in printed
    assert "unreadable audio: 1, e.g. " in printed and "missing.wav" in printed
    result = _strict_json(out)
    assert result["items_total"] == 4 and result["by_language"]["all"]["utterances"] == 3
    assert result["skipped"]["total"] == 1 and result["skipped"]["fraction"] == 0.25
    assert result["skipped"]["counts"] == {"unreadable audio": 1}
    assert result["skipped"]["max_skipped"] == "25%"


def test_max_skipped_accepts_a_count_or_a_percentage():
    assert parse_max_skipped("3") == 3 and parse_max_skipped(" 5% ") == pytest.approx(0.05)
    assert parse_max_skipped(2) == 2 and parse_max_skipped(0.1) == 0.1 and parse_max_skipped(None) is None
    for bad in ("lots", "-1", "150%", "1.5", "nan%", True, 1.5):
        with pytest.raises(EvaluationError, match="neither a number of items"):
            parse_max_skipped(bad)


def test_a_bad_max_skipped_fails_before_the_model_loads(tmp_path, capsys):
    manifest = tiny_manifest(tmp_path / "c", n=1)
    args = ["eval", "--manifest", str(manifest), "--model", "no-such-model", "--max-skipped", "lots"]
    assert main(args) == 2
    assert _error(capsys.readouterr().err).startswith("error: max_skipped 'lots' is neither")


def test_a_count_limit_is_checked_in_the_library(tiny_backbone, tmp_path):
    manifest = _append(tiny_manifest(tmp_path / "c", n=2), {"id": "gone", "audio": "audio/missing.wav"})
    items = read_manifest(manifest)
    with pytest.raises(EvaluationError, match="1 of 3 item"):
        evaluate_items(tiny_backbone, items, max_skipped=0, manifest=manifest)
    result = evaluate_items(tiny_backbone, items, max_skipped=1)
    assert result["skipped"]["total"] == 1 and result["items_total"] == 3
    assert evaluate_items(tiny_backbone, items)["skipped"]["max_skipped"] is None  # library: no limit


def test_a_clip_over_30_s_is_scored_long_form_not_dropped(tiny_backbone, tmp_path):
    manifest = tiny_manifest(tmp_path / "c", n=2)
    write_tone(tmp_path / "c" / "audio" / "long.wav", seconds=40.0, freq=300)
    _append(manifest, {"id": "long", "audio": "audio/long.wav"})
    items = read_manifest(manifest)
    for reuse in (False, True):  # the encoder cache holds 30 s windows: long clips must bypass it
        result = evaluate_items(
            tiny_backbone, items, DecodingOptions(batch_size=2), reuse_encoder_outputs=reuse, max_skipped=0
        )
        assert result["skipped"]["total"] == 0 and result["by_language"]["all"]["utterances"] == 3
        assert result["long_form"] == {"utterances": 1, "stalled": 0}
        long = next(u for u in result["utterances"] if u["id"] == "long")
        assert long["long_form"] and long["hypothesis"]
        assert result["audio_seconds"] == pytest.approx(40.0 + 0.5 + 0.75)


def test_a_reference_empty_after_normalisation_is_skipped_and_nothing_is_infinite(tiny_backbone, tmp_path):
    manifest = tiny_manifest(tmp_path / "c", n=2)
    _append(
        manifest,
        {"id": "dots", "audio": "audio/utt0.wav", "text": "..."},
        {"id": "music", "audio": "audio/utt1.wav", "text": "[music]"},
    )
    result = evaluate_items(tiny_backbone, read_manifest(manifest), max_skipped=2)
    reason = "reference empty after normalisation"
    assert result["skipped"]["counts"] == {reason: 2}
    assert result["skipped"]["examples"][reason] == ["dots '...'", "music '[music]'"]
    assert result["by_language"]["all"]["utterances"] == 2
    for stats in result["by_language"].values():
        for normaliser in ("raw", "whisper", "script_safe"):
            assert math.isfinite(stats[normaliser]["wer"]) and math.isfinite(stats[normaliser]["cer"])
    out = write_result(result, tmp_path / "res.json")
    assert _strict_json(out)["skipped"]["total"] == 2


def test_write_result_refuses_a_non_finite_number(tmp_path):
    result = {"by_language": {"cy": {"raw": {"wer": float("inf")}}}, "worst": []}
    with pytest.raises(EvaluationError, match=r"result\['by_language'\]\['cy'\]\['raw'\]\['wer'\] is not"):
        write_result(result, tmp_path / "res.json")
    assert not (tmp_path / "res.json").exists() and not (tmp_path / "res.md").exists()


def test_an_unknown_language_names_the_item_its_line_and_the_models_codes(tmp_path, capsys):
    manifest = _append(
        tiny_manifest(tmp_path / "c", n=2),
        {"id": "odd", "audio": "audio/utt0.wav", "language": "klingon"},
        blank_line=True,  # the error must give the file's line (4), not the item's position (3)
    )
    out = tmp_path / "res.json"
    assert _eval(manifest, out) == 2
    stderr = capsys.readouterr().err
    err = _error(stderr)
    assert err.startswith(f"error: utterance 'odd' ({manifest}:4): language 'klingon' is not one this model")
    assert "its codes are: af, am, ar" in err and "--detect-language" in err
    assert "transcribing" not in stderr and "loading audio" not in stderr
    # The suggested fix works: the model's own detection needs no manifest language.
    assert _eval(manifest, out, "--detect-language") == 0
    assert _strict_json(out)["by_language"]["all"]["utterances"] == 3


def test_unknown_languages_are_checked_against_this_model(tiny_backbone, tmp_path):
    # "yue" is a Whisper code, but only large-v3 has its token: valid in general, not for this model.
    if "yue" in tiny_backbone.languages:
        pytest.skip("this tiny model has a Cantonese token")
    manifest = tiny_manifest(tmp_path / "c", n=3, language="yue")
    with pytest.raises(UnknownLanguageError, match=r"'utt0' .*2 more item\(s\) with such languages: 'yue'"):
        evaluate_items(tiny_backbone, read_manifest(manifest), manifest=manifest)


def test_the_result_records_the_language_decoded_in_forced_or_detected(tiny_backbone, tmp_path):
    items = read_manifest(tiny_manifest(tmp_path / "c", n=2, language="cy"))
    forced = evaluate_items(tiny_backbone, items)
    # Forcing each item's own language used to leave "language": null, as if it had been detected.
    assert forced["decoding"]["language"] == "cy" and forced["decoding"]["language_source"] == "manifest"
    assert forced["decoding"]["languages_decoded"] == {"cy": 2}
    assert [u["decoded_language"] for u in forced["utterances"]] == ["cy", "cy"]
    detected = evaluate_items(tiny_backbone, items, force_language=False)
    assert detected["decoding"]["language_source"] == "detected"
    used = [u["decoded_language"] for u in detected["utterances"]]
    assert all(code in tiny_backbone.languages for code in used)
    assert sum(detected["decoding"]["languages_decoded"].values()) == 2


def test_suspicious_utterances_are_counted_by_rule_and_numbers_spelled_where_known(tiny_backbone, tmp_path):
    manifest = tiny_manifest(tmp_path / "c", n=2, language="cy", texts=["rhif 2", "bore da"])
    _append(manifest, {"id": "ka", "audio": "audio/utt0.wav", "language": "ka", "text": "12 სახლი"})
    result = evaluate_items(tiny_backbone, read_manifest(manifest))
    # num2words has Welsh, not Georgian: Georgian digits stay digits, and the result says so.
    assert result["number_words"] == {"normaliser": "lenient", "spelled_out": ["cy"], "digits_kept": ["ka"]}
    assert {"raw", "whisper", "script_safe", "lenient"} <= set(result["by_language"]["cy"])
    by_rule = {}
    for u in result["utterances"]:
        assert u["suspicious"] == bool(u["suspicious_reasons"])
        for reason in u["suspicious_reasons"]:
            by_rule[reason] = by_rule.get(reason, 0) + 1
    counts = result["by_language"]["all"]["suspicious_reasons"]
    assert {reason: n for reason, n in counts.items() if n} == by_rule and by_rule  # the random model babbles
    out = write_result(result, tmp_path / "res.json")
    assert (
        _strict_json(out)["utterances"][0]["suspicious_reasons"]
        == result["utterances"][0]["suspicious_reasons"]
    )
    assert "suspicious, by rule: " in out.with_suffix(".md").read_text()
