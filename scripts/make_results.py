"""Generate docs/RESULTS.md (and its plots) from the committed study results under benchmarks/, and
the tables of the hand-written pages (docs/STUDY.md) between their `<!-- generated:... -->` markers.

Run: .venv/bin/python scripts/make_results.py   (--check: exit 1 if a page's tables are out of date)
Nothing in docs/RESULTS.md, nor in a generated block, is typed by hand: edit the studies' configs or
rerun them instead; the prose around the blocks is hand-written and must be re-read against them.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from pathlib import Path

from dama_asr.report import build_report
from dama_asr.report.results import fill_generated

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("docs/STUDY.md",)  # hand-written readings whose tables are generated blocks


def study_section(study: Path, docs: Path) -> str:
    out = docs / "results" / study.name
    build_report(
        study.relative_to(ROOT), out.relative_to(ROOT), title=study.name
    )  # relative paths in the text
    report_md = (out / "report.md").read_text()
    body = report_md.split("\n", 1)[1]  # drop the report's own title
    body = body.replace("](", f"](results/{study.name}/")
    command = f"dama bench {study.relative_to(ROOT)}/config.yaml"
    return f"## {study.name}\n\nProduced by `{command}`; then `python scripts/make_results.py`.\n{body}\n"


def experts_section(study: Path) -> str:
    from dama_asr.report.experts_table import experts_table, routing_table

    command = f"dama bench {study.relative_to(ROOT)}/config.yaml"
    return (f"## {study.name}\n\nProduced by `{command}`; then `python scripts/make_results.py`.\n\n"
            f"{experts_table(study)}\nRouting, per language (rows that route by a prediction):\n\n{routing_table(study)}\n")  # fmt: skip


def expansion_section(study: Path) -> str:
    from dama_asr.report.expansion_table import base_languages_table, expansion_table

    command = f"dama bench {study.relative_to(ROOT)}/config.yaml"
    return (f"## {study.name}\n\nProduced by `{command}`; then `python scripts/make_results.py`.\n\n"
            f"{expansion_table(study)}\nBase languages before and after expansion (test WER, language given):\n\n"
            f"{base_languages_table(study)}\n")  # fmt: skip


def _section(study: Path, docs: Path) -> str:
    from dama_asr.bench.cells import config_kind

    kind = config_kind(study / "config.yaml")
    if kind == "language-experts":
        return experts_section(study)
    if kind == "expansion":
        return expansion_section(study)
    return study_section(study, docs)


def zero_shot_section(data: dict) -> str:
    lines = [
        "| corpus | language | utts | audio min | WER raw | CER raw | WER norm | CER norm | WER script-safe "
        "| CER script-safe | suspicious |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in data["rows"]:
        lines.append(
            f"| {r['corpus']} | {r['language']} | {r['utterances']} | {r['audio_minutes']:.1f} | "
            + " | ".join(
                f"{r[f'{n}_{m}']:.1%}" for n in ("raw", "whisper", "script_safe") for m in ("wer", "cer")
            )
            + f" | {r['suspicious']} |"
        )
    note = f" {data['note']}." if data.get("note") else ""
    return (
        f"Model {data['model']}, {data['decoding']}, every utterance of each test split; {data['machine']}.{note} "
        "Whisper's normaliser strips combining marks, which hurts Indic and other abugida scripts: read "
        "the script-safe columns for mr and gu. 'suspicious' counts outputs that hit the token cap or loop.\n\n"
        + "\n".join(lines)
        + "\n"
    )


def comparison_section(data: dict) -> str:
    rows = []
    for name in ("recipe", "dama"):
        r = data[name]
        rows.append(
            f"| {r['recipe']} | {r['trainable_parameters']:,} | {r['samples_per_second']:.2f} | "
            f"{r['peak_rss_gib']:.2f} | {r['train_seconds']:.0f} | {r['dev_wer']:.1%} |"
        )
    ratios = "\n".join(f"- {k}: **{v}**" for k, v in data["ratios"].items())
    dama = data["dama"]
    per_epoch = ", ".join(
        f"{w:.1%} ({s:.0f} s)" for w, s in zip(dama["dev_wer_per_epoch"], dama["epoch_seconds"], strict=True)
    )
    ratios += (
        f"\n- dama dev WER after each epoch (epoch seconds, epoch 1 with the cold encoder cache): {per_epoch}"
    )
    cached = sorted(dama["epoch_seconds"][1:])
    if cached:  # derived from the committed epoch times: what every epoch after the first costs
        steady = dama["train_utterances"] / cached[len(cached) // 2]
        ratios += (
            f"\n- samples/s of dama's cached epochs (median of epochs 2+): {steady:.2f}, "
            f"{steady / data['recipe']['samples_per_second']:.1f}x the recipe's"
        )
    d = data["data"]
    note = f" {data['note']}." if data.get("note") else ""
    return (
        f"{d['hours']} h of synthetic {d['language']} ({d['train_utterances']} utterances), "
        f"{data['recipe']['epochs']} epochs, dev WER on {d['dev_utterances']} dev utterances, "
        f"{data['seeds']} seed; {data['machine']}.{note} Training time counts encoder work in both "
        "(dama's cold encoder-cache build included) and excludes dev scoring.\n\n"
        "| run | trainable params | samples/s | peak RSS GiB | train s | dev WER |\n|---|---:|---:|---:|---:|---:|\n"
        + "\n".join(rows)
        + "\n\n"
        + ratios
        + "\n"
    )


def probe_section(data: dict, folder: Path) -> str:
    any_curve = next(iter(data["curves"].values()))
    header = "| model | " + " | ".join(f"L{layer}" for layer in any_curve["layers"]) + " | thetas |"
    lines = [header, "|---|" + "---:|" * len(any_curve["layers"]) + "---|"]
    for name, curve in data["curves"].items():
        thetas = "default (no U)" if curve["fallback"] else " / ".join(f"{t:.2f}" for t in curve["thetas"])
        cells = " | ".join(f"{m:.1%} ± {sd:.1%}" for m, sd in zip(curve["mean"], curve["std"], strict=True))
        lines.append(f"| {name} | {cells} | {thetas} |")
    langs = ", ".join(f"{k} {v}" for k, v in data["languages"].items())
    plot = next(folder.glob("*.png"), None)
    image = f"\n\n![probe curves](../{plot.relative_to(ROOT)})" if plot else ""
    s = data["settings"]
    return (
        f"Decoder layers, {s['prompt']} prompt, {s['folds']}-fold CV (mean ± std over folds), chance "
        f"{data['chance']:.1%}; utterances: {langs}. L0 is the token-embedding output.{image}\n\n"
        + "\n".join(lines)
        + "\n"
    )


def encoder_probe_section(data: dict, folder: Path) -> str:
    """The encoder's two probes: held-out CER of a linear CTC head per layer, pooled language ID per layer."""
    lid = data["lid_curve"]
    layers = lid["layers"]
    lines = [
        "| probe | " + " | ".join(f"L{layer}" for layer in layers) + " |",
        "|---|" + "---:|" * len(layers),
    ]
    for code, curve in data["char_curves"].items():
        cells = " | ".join(f"{c:.1%}" for c in curve["cer"])
        lines.append(
            f"| CTC CER, {code} ({curve['train_utterances']} train / {curve['heldout_utterances']} held out) | {cells} |"
        )
    cells = " | ".join(f"{m:.1%} ± {sd:.1%}" for m, sd in zip(lid["mean"], lid["std"], strict=True))
    lines.append(f"| language ID ({len(lid['languages'])} languages, {lid['folds']}-fold) | {cells} |")
    langs = ", ".join(f"{k} {v}" for k, v in lid["languages"].items())
    plot = next(folder.glob("*.png"), None)
    image = f"\n\n![encoder probes](../{plot.relative_to(ROOT)})" if plot else ""
    return (
        f"Dev splits only, on {data['machine']}; {data.get('note', '')}. L0 is the encoder's input embedding "
        f"(after its two convolutions). Language ID: chance {lid['chance']:.1%}; utterances: {langs}.{image}\n\n"
        + "\n".join(lines)
        + "\n"
    )


def _training_rows(modes: dict) -> list[str]:
    base = {k: modes[k]["samples_per_second"] for k in ("recipe-fp32", "recipe-bf16") if k in modes}
    rows = ["| mode | precision | allocator | utts | epochs run | cache s | train s | 3 epochs s | samples/s | "
            "x recipe fp32 | x recipe bf16 | peak RSS GiB |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    order = (
        "recipe-fp32",
        "recipe-bf16",
        "lora-encoder",
        "lora-encoder-top",
        "dama-fp32",
        "dama-auto",
        "dama-auto-kv",
    )
    names = [m for m in order if m in modes]
    for name in names:
        m = modes[name]
        ratio = {k: f"{m['samples_per_second'] / v:.1f}" for k, v in base.items()}
        three = f"{m['three_epoch_seconds']:.0f}" + (
            "" if m["three_epochs"] == "measured" else " (extrapolated)"
        )
        rows.append(
            f"| {name} | {m['precision']} | {m['allocator']} | {m['utterances']} | {m['epochs_run']} | "
            f"{m.get('cache_seconds', 0):.0f} | {m['train_seconds']:.0f} | {three} | {m['samples_per_second']:.2f} | "
            f"{ratio.get('recipe-fp32', '–')} | {ratio.get('recipe-bf16', '–')} | {m['peak_rss_gib']:.2f} |"
        )
    return rows


def speed_section(data: dict) -> str:
    m, modes = data["machine"], data["modes"]
    lines = [f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['torch_threads']} torch threads, native bf16: "
             f"{', '.join(m['bf16_units']) or 'none'}; torch {m['torch']}; measured {m['date']}. The modes ran "
             "one at a time in one session on this machine; absolute times drift on a shared machine, ratios much "
             "less.", "", *(f"- {n}" for n in data.get("notes", [])), ""]  # fmt: skip
    peak = modes.get("peak")
    if peak:
        lines += [f"Matmul peak (4096x4096, all threads): fp32 {peak['fp32_gflops']:.0f} GFLOP/s, bf16 "
                  f"{peak['bf16_gflops']:.0f} GFLOP/s ({peak['bf16_over_fp32']:.1f}x).", ""]  # fmt: skip
    if any(k in modes for k in ("recipe-fp32", "dama-auto")):
        lines += ["Training on 0.5 h of synthetic Welsh, cold encoder cache counted, no dev evaluation "
                  "(samples/s = utterances x epochs / (cache + training seconds)). Peak RSS is each process's VmHWM; for "
                  "the recipe and lora-encoder modes it was re-measured over their first steps in a short run:", "",
                  *_training_rows(modes), ""]  # fmt: skip
    step = modes.get("step")
    if step and peak:
        lines += ["One cached DAMA step (batch 8): FLOPs counted by torch.profiler (matmuls; attention uncounted, so "
                  "a lower bound):", "", "| variant | s/step | GFLOP/step | GFLOP/s | of this precision's matmul peak |",
                  "|---|---:|---:|---:|---:|"]  # fmt: skip
        for name, v in step.items():
            if isinstance(v, dict):
                top = peak["fp32_gflops"] if name == "no" else peak["bf16_gflops"]
                lines.append(f"| {name} | {v['seconds_per_step']:.3f} | {v['gflop_per_step']:.0f} | "
                             f"{v['achieved_gflops']:.0f} | {v['achieved_gflops'] / top:.0%} |")  # fmt: skip
        lines.append("")
    kv = modes.get("kv")
    if kv:
        lines += ["Frozen cross-attention K/V of a batch of 8 (6 layers x k,v over 1500 frames): "
                  + "; ".join(f"{p}: recompute {v['recompute'] * 1000:.0f} ms, read from RAM "
                              f"{v['gather_from_ram'] * 1000:.0f} ms ({v['cache_bytes_per_utterance'] / 2**20:.0f} MiB "
                              "per utterance)" for p, v in kv.items() if isinstance(v, dict)) + ".", ""]  # fmt: skip
    tr = modes.get("transcribe")
    if tr:
        lines += [f"Batched greedy transcription, {tr['utterances']} English test utterances "
                  f"({tr['audio_seconds']:.0f} s of audio): real-time factor fp32 {tr['no']['real_time_factor']:.3f}, "
                  f"bf16 {tr['bf16']['real_time_factor']:.3f} ({tr['rtf_ratio_fp32_over_bf16']:.1f}x); "
                  f"identical transcripts {tr['identical_transcripts']}/{tr['utterances']}.", ""]  # fmt: skip
    curve = sorted((v for k, v in modes.items() if k.startswith("curve-")), key=lambda v: v["hours"])
    if "dama-auto" in modes:
        curve = sorted([*curve, {**modes["dama-auto"], "hours": 0.5}], key=lambda v: v["hours"])
    if curve:
        lines += ["Cost curve, `dama train --method dama` (auto), cold cache + 3 epochs:", "",
                  "| hours | utts | cache s | train s | total s |", "|---:|---:|---:|---:|---:|"]  # fmt: skip
        for v in curve:
            lines.append(f"| {v['hours']:g} | {v['utterances']} | {v['cache_seconds']:.0f} | {v['train_seconds']:.0f} | "
                         f"{v['cache_seconds'] + v['train_seconds']:.0f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


EXPORT_ENGINES = {"merged": "merged transformers", "dama": "dama transcribe (adapter set)", "ct2": "CTranslate2",
                  "faster-whisper": "faster-whisper"}  # fmt: skip


def export_section(data: dict) -> str:
    """The export benchmark: one line per engine x precision x batch, speed against CT2 int8."""
    m, rows = data["machine"], data["rows"]
    # faster-whisper's engine at int8, as fast as either front end runs it: the bar `dama transcribe` must clear.
    int8 = [
        r["rtf"] for r in rows.values() if r["engine"] in ("ct2", "faster-whisper") and r["setting"] == "int8"
    ]
    fastest_int8 = min(int8, default=None)
    langs = ", ".join(f"{k} {len(v)}" for k, v in data["items"].items())
    when = sorted(r["measured"] for r in rows.values())
    lines = [f"Machine: {m['cpu']}, {data['threads']} threads for every engine; torch {m['torch']}; rows measured "
             f"{when[0]} to {when[-1]} (each row's time is in results.json). Test utterances per language: {langs} ({data['audio_seconds'] / 60:.1f} min of audio); "
             "greedy, language given, no timestamps. RTF = decoding seconds / audio seconds (models loaded and "
             "warmed up first); peak RSS = the row's own process. Agreement = identical text to merged fp32 batch 1.", "",
             "| row | engine | precision | batch | RTF | speed vs fastest CT2 int8 | WER | CER | macro WER | agreement | peak RSS GiB |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, r in rows.items():
        speed = f"{fastest_int8 / r['rtf']:.2f}x" if fastest_int8 else "–"
        setting = {"no": "fp32"}.get(r["setting"], r["setting"])
        lines.append(f"| {name} | {EXPORT_ENGINES.get(r['engine'], r['engine'])} | {setting} | {r['batch']} | "
                     f"{r['rtf']:.3f} | {speed} | {r['wer']:.1%} | {r['cer']:.1%} | {r['macro_wer']:.1%} | "
                     f"{r.get('agreement', 1.0):.0%} | {r['peak_rss_gib']:.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def benchmark_section(path: Path) -> str:
    data = json.loads(path.read_text())
    variant = "" if path.stem == "results" else f" ({path.stem.removeprefix('results-')})"
    head = f"### {path.parent.name}{variant}\n\nProduced by `{data.get('command', '?')}`.\n\n"
    if "rows" in data and "audio_seconds" in data:
        return head + export_section(data)
    if "rows" in data:
        return head + zero_shot_section(data)
    if "ratios" in data:
        return head + comparison_section(data)
    if "curves" in data:
        return head + probe_section(data, path.parent)
    if "char_curves" in data:
        return head + encoder_probe_section(data, path.parent)
    if "modes" in data:
        return head + speed_section(data)
    return head + f"```json\n{json.dumps(data, indent=2)}\n```\n"


DEMO_TIMING = "docs/demo/timing.json"  # copied from $DAMA_HOME/demo/timing.json after a fresh `make demo`
DEMO_BLOCK = re.compile(r"(<!-- demo-timing -->)(.*?)(<!-- /demo-timing -->)", re.S)
METHOD_NAMES = {"dama": "DAMA", "lora": "LoRA-64", "zero-shot": "zero-shot"}


def demo_sentence(timing: dict) -> str:
    """The README's account of the committed demo run: its time, machine and test WER."""
    wer = ", ".join(
        f"{value:.1%} {METHOD_NAMES.get(name, name)}" for name, value in timing["test_wer"].items()
    )
    seeds = "one seed" if timing["seeds"] == 1 else f"{timing['seeds']} seeds"
    return (
        f"The {timing['total_seconds'] / 60:.1f} min were measured with an empty `$DAMA_HOME` on "
        f"{timing['machine_description']} (finished {timing['finished']}; the step timings land in "
        f"`$DAMA_HOME/demo/timing.json`, committed as `{DEMO_TIMING}`): test WER {wer} "
        f"({seeds}, {timing['test_utterances']} utterances)."
    )


def refresh_readme(check: bool = False) -> bool:
    """Rewrite README.md's demo-timing block from DEMO_TIMING; True when it changed (or would)."""
    path = ROOT / "README.md"
    text = path.read_text(encoding="utf-8")
    timing = json.loads((ROOT / DEMO_TIMING).read_text(encoding="utf-8"))
    filled = DEMO_BLOCK.sub(lambda m: f"{m[1]}{demo_sentence(timing)}{m[3]}", text)
    if filled != text and not check:
        path.write_text(filled, encoding="utf-8")
    return filled != text


def refresh_pages(check: bool = False) -> list[str]:
    """Rewrite the generated blocks of PAGES from the cells; the pages that changed (with check:
    would change, and nothing is written)."""
    changed = ["README.md"] if refresh_readme(check) else []
    for page in PAGES:
        path = ROOT / page
        text = path.read_text(encoding="utf-8")
        filled = fill_generated(text, ROOT, where=page)
        if filled != text:
            changed.append(page)
            if not check:
                path.write_text(filled, encoding="utf-8")
    return changed


def main() -> None:
    if "--check" in sys.argv[1:]:
        stale = refresh_pages(check=True)
        print(f"out of date: {', '.join(stale)}" if stale else "generated tables are up to date")
        sys.exit(1 if stale else 0)
    os.chdir(ROOT)
    docs = ROOT / "docs"
    studies = sorted(p.parent for p in ROOT.glob("benchmarks/*/cells") if any(p.glob("*.json")))
    sections = [_section(s, docs) for s in studies]
    extras = [benchmark_section(path) for path in sorted(ROOT.glob("benchmarks/*/results*.json"))]
    header = (
        "# Results\n\nGenerated by `python scripts/make_results.py` from the committed results in `benchmarks/` "
        f"(this copy on {platform.machine()}, {platform.system()}). WER/CER are corpus-level, Whisper-normalised "
        "unless marked raw; seeds per number are given in each table. What the study's numbers say, read by "
        "hand against these tables: [STUDY.md](STUDY.md).\n\n"
    )
    text = header + "\n".join(sections) + ("\n## Benchmarks\n\n" + "\n".join(extras) if extras else "")
    (docs / "RESULTS.md").write_text(text)
    print(f"wrote {docs / 'RESULTS.md'} ({len(studies)} studies, {len(extras)} benchmark files)")
    for page in refresh_pages():
        print(f"rewrote the generated tables of {page}; re-read its prose against them")


if __name__ == "__main__":
    main()
