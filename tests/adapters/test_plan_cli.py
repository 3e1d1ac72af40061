import json

from dama_asr.cli import main


def test_plan_large_v2_table_without_weights(capsys):
    assert main(["plan", "--model", "openai/whisper-large-v2", "--method", "dama"]) == 0
    out = capsys.readouterr().out
    assert "| decoder | 10 | middle | 8 | 16 | trailing-SVD-A, zero-B | B only |" in out
    # the late ramp starts low: its arrow and the legend say so (a new user read "late" as high-rank)
    assert "| late ↑ |" in out and "the first late layer is still low-rank" in out and "`layers.0`" in out
    assert "total trainable parameters: 14,909,440" in out
    assert "dama uses 21.9% of that" in out


def test_plan_json_and_probe_thresholds(tmp_path, capsys):
    from dama_asr.probe import ProbeResult, save_probe
    from dama_asr.probe.curve import ThetaSuggestion

    suggestion = ThetaSuggestion(
        theta1=0.5, theta2=0.84, l_early=3, l_late=5, num_layers=6, fallback=False, reason="test"
    )
    probe = save_probe(
        ProbeResult("whisper-base", {"cy": 5, "en": 5}, 0.5, None, None, suggestion), tmp_path / "probe.json"
    )
    assert main(["plan", "--model", "whisper-base", "--probe", str(probe), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["adapter"]["theta1"] == 0.5
    zones = {m["layer"]: m["zone"] for m in data["modules"]}
    # L=6: l_early = floor(3.0) = 3, l_late = floor(5.04) = 5
    assert [zones[layer] for layer in range(1, 7)] == ["early", "early", "early", "middle", "late", "late"]


def test_plan_bad_options_are_clear_errors(capsys):
    assert main(["plan", "--theta1", "0.8", "--theta2", "0.2"]) == 2
    assert "theta1/theta2" in capsys.readouterr().err
    assert main(["plan", "--model", "tiny-random", "--r-high", "32"]) == 2
    assert "at most 16" in capsys.readouterr().err
    assert main(["plan", "--targets", "fc3"]) == 2
    assert "unknown target module 'fc3'" in capsys.readouterr().err
