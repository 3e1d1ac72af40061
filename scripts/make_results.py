"""Generate docs/RESULTS.md (and its plots) from the committed study results under benchmarks/.

Run: .venv/bin/python scripts/make_results.py
Nothing in docs/RESULTS.md is typed by hand: edit the studies' configs or rerun them instead.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from dama_asr.report import build_report

ROOT = Path(__file__).resolve().parents[1]


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


def benchmark_section(path: Path) -> str:
    data = json.loads(path.read_text())
    variant = "" if path.stem == "results" else f" ({path.stem.removeprefix('results-')})"
    head = f"### {path.parent.name}{variant}\n\nProduced by `{data.get('command', '?')}`.\n\n"
    if "rows" in data:
        return head + zero_shot_section(data)
    if "ratios" in data:
        return head + comparison_section(data)
    if "curves" in data:
        return head + probe_section(data, path.parent)
    return head + f"```json\n{json.dumps(data, indent=2)}\n```\n"


def main() -> None:
    os.chdir(ROOT)
    docs = ROOT / "docs"
    studies = sorted(p.parent for p in ROOT.glob("benchmarks/*/cells") if any(p.glob("*__*.json")))
    sections = [study_section(s, docs) for s in studies]
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


if __name__ == "__main__":
    main()
