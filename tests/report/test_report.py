import json
import math

import numpy as np
import pytest

from dama_asr.report import aggregate, build_report, load_cell_results, markdown_tables


def _cell(method, hours, seed, wer, params):
    # DAMA cells record their thread count (seed 1 ran as a 1-thread lane); the LoRA cell is an old one without.
    machine = {"machine": {"torch_threads": 2 if seed == 0 else 1}} if method == "dama" else {}
    return {
        **machine,
        "cell": {"method": method, "hours": hours, "language": "cy", "seed": seed, "corpus": "synth"},
        "trainable_parameters": params,
        "train": {
            "seconds_per_epoch": [300.0, 100.0, 90.0],
            "samples_per_second": 4.0,
            "peak_memory_gib": 3.5,
            "dev_wer": [0.9, 0.6],
        },
        "test": {"wer": wer, "cer": wer / 3, "utterances": 100, "suspicious": 0},
        "zero_shot": {"wer": 2.5, "cer": 1.4},
        "forgetting": {"en_wer_before": 0.1, "en_wer_after": 0.2},
    }


@pytest.fixture()
def study(tmp_path):
    cells = tmp_path / "study" / "cells"
    cells.mkdir(parents=True)
    for i, (m, h, s, w, p) in enumerate(
        [
            ("dama", 0.5, 0, 0.50, 1_331_200),
            ("dama", 0.5, 1, 0.60, 1_331_200),
            ("lora", 0.5, 0, 0.70, 5_111_808),
            ("dama", 1.0, 0, 0.40, 1_331_200),
        ]
    ):
        (cells / f"c{i}.json").write_text(json.dumps(_cell(m, h, s, w, p)))
    probes = tmp_path / "study" / "probes"
    probes.mkdir()
    (probes / "base.json").write_text(
        json.dumps({"decoder": {"mean": [1.0, 0.9, 0.8, 0.85, 0.95, 1.0, 1.0]}})
    )
    return tmp_path / "study"


def test_aggregate_means_and_spread_over_seeds(study):
    aggs = {(a.method, a.hours): a for a in aggregate(load_cell_results(study))}
    dama = aggs[("dama", 0.5)]
    assert (
        dama.seeds == 2
        and dama.wer == pytest.approx(0.55)
        and dama.wer_std == pytest.approx(0.0707, abs=1e-4)
    )
    assert dama.seconds_per_epoch == pytest.approx(95.0)  # epoch 1 (cache build) excluded
    md = markdown_tables(list(aggs.values()))
    assert "| dama | 1,331,200 | 55.0% ± 7.1% | 40.0% | 2/1 |" in md
    assert "zero-shot 250.0%" in md
    assert "test CER (normalised), zero-shot 140.0%" in md
    assert "| dama | 1,331,200 | 18.3% ± 2.4% | 13.3% | 2/1 |" in md  # CER = WER / 3 in the fixture
    assert "| synth/cy | dama | 0.5 | 300 | 95 | 4.00 | 3.50 | 1/2 | 10.0% → 20.0% |" in md
    assert "| synth/cy | lora | 0.5 | 300 | 95 | 4.00 | 3.50 | ? | 10.0% → 20.0% |" in md


def test_report_html_renders_with_plots_in_chromium(study, tmp_path):
    from dama_asr.report.screenshot import screenshot

    page = build_report(study)
    text = page.read_text()
    assert text.count("data:image/png;base64,") == 3 and "<table>" in text
    assert (page.parent / "report.md").read_text().startswith("# dama-asr study")
    png = screenshot(page, tmp_path / "shot.png")
    import matplotlib.image as mpimg

    image = mpimg.imread(png)[..., :3]  # (H, W, 3) floats
    # DAMA's red (#d62728) markers must be visible in the rendered plots
    red = (
        (np.abs(image[..., 0] - 0xD6 / 255) < 0.06)
        & (np.abs(image[..., 1] - 0x27 / 255) < 0.06)
        & (np.abs(image[..., 2] - 0x28 / 255) < 0.06)
    )
    assert red.sum() > 50, "no DAMA markers visible in the screenshot"
    assert (image.mean(axis=2) < 0.5).mean() > 0.005, "page looks blank"


def test_report_without_results_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no finished cell results"):
        build_report(tmp_path)


def test_converged_runs_get_their_dev_curves(study):
    # The fixture's 2-epoch cells draw no curve; a converged cell (dev WER over 6 epochs) does.
    from dama_asr.report.plots import dev_curves

    assert dev_curves(load_cell_results(study)) == {}
    assert "dev_curves.png" not in (build_report(study).parent / "report.md").read_text()
    cell = _cell("lora", 1.0, 0, 0.3, 5_111_808)
    cell["train"]["dev_wer"] = [
        0.9,
        None,
        0.5,
        0.45,
        0.47,
    ]  # epoch 2 unscored: a gap, later epochs keep their place
    (study / "cells" / "converged.json").write_text(json.dumps(cell))
    (curve,) = dev_curves(load_cell_results(study))["synth"].values()
    assert len(curve) == 5 and math.isnan(curve[1]) and curve[2:] == [0.5, 0.45, 0.47]
    cell["train"]["dev_wer"] = [0.9, None, None, 0.45, 0.47]  # 3 scored epochs: no curve
    assert dev_curves([cell]) == {}
    page = build_report(study)
    assert "![Dev WER by epoch (converged runs)](dev_curves.png)" in (page.parent / "report.md").read_text()
    assert (page.parent / "dev_curves.png").stat().st_size > 5_000
    assert page.read_text().count("data:image/png;base64,") == 4
