import json

from dama_asr.cli import main
from dama_asr.testing import save_tiny_whisper, tiny_manifest, write_tone


def test_transcribe_skips_bad_files_and_prints_one_line_each(tmp_path, capsys):
    good = [write_tone(tmp_path / f"{i}.wav", seconds=0.5 + i) for i in range(2)]
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"not audio at all")
    code = main(
        [
            "transcribe",
            str(good[0]),
            str(bad),
            str(good[1]),
            "--model",
            "tiny-random",
            "--language",
            "cy",
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert [line["audio"] for line in lines] == [str(good[0]), str(good[1])]
    assert all(line["language"] == "cy" for line in lines)
    assert "corrupt.wav" in err and "1 file(s) skipped" in err


def test_unknown_language_is_a_clear_error(tmp_path, capsys):
    audio = write_tone(tmp_path / "a.wav")
    assert main(["transcribe", str(audio), "--model", "tiny-random", "--language", "klingon"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown language 'klingon'") and "Traceback" not in err


def test_eval_writes_json_and_markdown(tmp_path, capsys):
    manifest = tiny_manifest(tmp_path / "corpus", n=3)
    # one empty reference and one missing file: skipped and counted, not fatal
    with open(manifest, "a") as f:
        f.write(json.dumps({"id": "empty", "audio": "audio/utt0.wav", "text": " ", "language": "cy"}) + "\n")
        f.write(
            json.dumps({"id": "gone", "audio": "audio/missing.wav", "text": "x", "language": "cy"}) + "\n"
        )
    model = save_tiny_whisper(tmp_path / "model")
    out_json = tmp_path / "res.json"
    args = ["eval", "--manifest", str(manifest), "--model", str(model), "--out", str(out_json)]
    assert main(args) == 2  # strict by default: a skipped item is an error
    assert "--max-skipped" in capsys.readouterr().err and not out_json.exists()
    assert main([*args, "--max-skipped", "2"]) == 0
    result = json.loads(out_json.read_text())
    assert result["by_language"]["cy"]["utterances"] == 3
    assert result["skipped"]["counts"] == {"empty reference": 1, "unreadable audio": 1}
    assert "missing.wav" in result["skipped"]["examples"]["unreadable audio"][0]
    assert out_json.with_suffix(".md").read_text().startswith("| language |")
    printed = capsys.readouterr().out
    assert "skipped 2 item(s)" in printed
    assert result["precision"] in ("no", "bf16") and f"precision: {result['precision']}" in printed
    # Forced float32 is what runs and what is recorded, whatever the hardware.
    assert (
        main(
            [
                "eval",
                "--manifest",
                str(manifest),
                "--model",
                str(model),
                "--out",
                str(out_json),
                "--precision",
                "no",
                "--max-skipped",
                "40%",
            ]
        )
        == 0
    )
    assert json.loads(out_json.read_text())["precision"] == "no"


def test_unknown_model_is_a_clear_error(tmp_path, capsys):
    audio = write_tone(tmp_path / "a.wav")
    assert main(["transcribe", str(audio), "--model", "nonsense"]) == 2
    assert "whisper-base, tiny-random" in capsys.readouterr().err


def test_eval_with_a_saved_adapter(tmp_path):
    from transformers import WhisperForConditionalGeneration

    from dama_asr.adapters import AdapterConfig, apply_adapter, save_adapter

    model_dir = save_tiny_whisper(tmp_path / "model")
    cfg = AdapterConfig(method="lora", r=2)
    adapted = apply_adapter(WhisperForConditionalGeneration.from_pretrained(model_dir), cfg)
    adapter_dir = save_adapter(adapted, cfg, tmp_path / "adapter", base_model=str(model_dir))
    manifest = tiny_manifest(tmp_path / "corpus", n=2)
    out = tmp_path / "res.json"
    args = [
        "eval",
        "--manifest",
        str(manifest),
        "--model",
        str(model_dir),
        "--adapter",
        str(adapter_dir),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert json.loads(out.read_text())["model"].endswith("+" + str(adapter_dir))
    assert main([*args[:-4], "--adapter", str(tmp_path / "nothing"), "--out", str(out)]) == 2


def test_building_the_parser_imports_no_torch():
    """`dama --help` and argument errors stay fast: torch/transformers load only when a command runs."""
    import subprocess
    import sys

    code = (
        "import sys; from dama_asr.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _all_parsers(parser, path=()):
    """(verb path, parser) for `dama` and every verb and sub-verb under it."""
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_parsers(sub, (*path, name))


def test_every_verbs_help_shows_its_defaults():
    from dama_asr.cli import HelpFormatter, build_parser

    parsers = dict(_all_parsers(build_parser()))
    assert len(parsers) > 15  # data, cache and their sub-verbs included
    for path, parser in parsers.items():
        assert parser.formatter_class is HelpFormatter, path
        parser.format_help()  # every help string formats
    eval_help = " ".join(parsers[("eval",)].format_help().split())
    assert "utterances decoded together (default: 8)" in eval_help
    assert "(default: whisper-base)" in eval_help and "(default: None)" not in eval_help
    assert "(default: False)" not in eval_help  # an off switch says nothing
    probe_help = " ".join(parsers[("probe",)].format_help().split())
    assert "cross-validation (default: 5)" in probe_help and "(default: both)" in probe_help


def test_transcribe_names_the_rule_a_suspicious_output_breaks(tmp_path, capsys):
    audio = write_tone(tmp_path / "short.wav", seconds=0.36)
    args = ["transcribe", str(audio), "--model", "tiny-random", "--language", "cy", "--precision", "no"]
    assert main([*args, "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["suspicious"] and "too long for its audio" in line["suspicious_reasons"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"[suspicious: {', '.join(line['suspicious_reasons'])}]" in printed
