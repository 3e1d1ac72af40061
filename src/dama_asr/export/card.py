"""README.md of an export: Hub front matter with `model-index` results, a table, and how to load it.

`model-index` is the Hub's machine-readable results block: one entry per (split, language) with the
WER and CER in percent. Only what the source records goes in (dev scores from the run or the set,
test scores from a `dama eval` result given with --results); nothing is filled with placeholders.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from dama_asr.export.source import Member, spec_of

LIBRARY = {"hf": "transformers", "peft": "peft", "ct2": "ctranslate2"}
FORMAT_LABEL = {"hf": "merged transformers model", "peft": "PEFT adapter", "ct2": "CTranslate2 model"}
ASR_TASK = {"type": "automatic-speech-recognition", "name": "Automatic Speech Recognition"}


def _label(method: str | None) -> tuple[str, str]:
    spec = spec_of(method)
    if spec is None:
        return "PEFT adapter", ""
    return spec.label, spec.summary


def _percent(value: float) -> float:
    return round(100 * float(value), 2)


def _result(
    split: str, data: str | None, language: str | None, scores: dict, normaliser: str | None
) -> dict | None:
    note = f" ({normaliser})" if normaliser else ""
    metrics = [{"type": kind, "value": _percent(scores[kind]), "name": f"{split} {kind.upper()}{note}"}
               for kind in ("wer", "cer") if isinstance(scores.get(kind), (int, float))]  # fmt: skip
    if not metrics:
        return None
    name = data or f"{split} set"
    dataset: dict[str, Any] = {"name": name, "type": name, "split": split}
    if language:
        dataset["config"] = language
    return {"task": dict(ASR_TASK), "dataset": dataset, "metrics": metrics}


def results_of(member: Member, test: dict | None) -> list[dict]:
    """model-index results: dev (per language where the run scored each) and test (--results)."""
    m = member.metrics
    out = []
    per_language = m.get("dev_by_language") or {}
    if member.language in per_language:
        per_language = {member.language: per_language[member.language]}
    if per_language:
        out += [
            _result("dev", m.get("dev_data"), code, s, m.get("normaliser"))
            for code, s in per_language.items()
        ]
    elif "dev_wer" in m:
        scores = {"wer": m.get("dev_wer"), "cer": m.get("dev_cer")}
        out.append(_result("dev", m.get("dev_data"), member.language, scores, m.get("normaliser")))
    if test:
        table = {k: v for k, v in test["by_language"].items() if k != "all"}
        if member.language:
            table = {member.language: table[member.language]} if member.language in table else {}
        if not table and not member.language and "all" in test["by_language"]:
            table = {None: test["by_language"]["all"]}
        out += [_result("test", test["source"], code, s, test["normaliser"]) for code, s in table.items()]
    return [r for r in out if r]


def _usage(fmt: str, base: str, language: str | None) -> str:
    lang = json.dumps(language) if language else None
    if fmt == "hf":
        forced = f"  # transcribes in {language}: the generation config forces it" if language else ""
        return ("```python\nfrom transformers import WhisperForConditionalGeneration, WhisperProcessor\n\n"
                "model = WhisperForConditionalGeneration.from_pretrained(folder)  # folder: this directory\n"
                "processor = WhisperProcessor.from_pretrained(folder)\n"
                "features = processor(audio, sampling_rate=16000, return_tensors=\"pt\").input_features\n"
                f"ids = model.generate(features){forced}\n"
                "text = processor.batch_decode(ids, skip_special_tokens=True)\n```")  # fmt: skip
    if fmt == "peft":
        given = f', language={lang}, task="transcribe"' if lang else ""
        return ("```python\nfrom peft import PeftModel\nfrom transformers import WhisperForConditionalGeneration\n\n"
                f"base = WhisperForConditionalGeneration.from_pretrained({json.dumps(base)})\n"
                "model = PeftModel.from_pretrained(base, folder)  # folder: this directory\n"
                f"ids = model.generate(input_features=features{given})\n```")  # fmt: skip
    given = f", language={lang}" if lang else ""
    return ("```python\nfrom faster_whisper import WhisperModel\n\n"
            "model = WhisperModel(folder, device=\"cpu\", compute_type=\"int8\")  # folder: this directory\n"
            f"segments, info = model.transcribe(\"audio.wav\"{given})\n```\n\n"
            "CTranslate2 itself: `ctranslate2.models.Whisper(folder)`, prompting each item with "
            "`<|startoftranscript|>`, the language token, `<|transcribe|>`, `<|notimestamps|>`.")  # fmt: skip


def _table(rows: list[tuple[str, str]]) -> str:
    return "\n".join(["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def _score_rows(results: list[dict]) -> list[tuple[str, str]]:
    rows = []
    for r in results:
        where = r["dataset"]["name"] + (f", {r['dataset']['config']}" if "config" in r["dataset"] else "")
        for metric in r["metrics"]:
            rows.append((metric["name"], f"{metric['value']:.2f}% ({where})"))
    return rows


def export_card(fmt: str, member: Member, base: str, details: dict, test: dict | None = None) -> str:
    """README.md for one exported model. details: quantization, merge_check (dicts from the export)."""
    label, summary = _label(member.method)
    languages = [member.language] if member.language else list(member.trained_on)
    front: dict[str, Any] = {"base_model": base} if base else {}
    front["library_name"] = LIBRARY[fmt]
    front["pipeline_tag"] = "automatic-speech-recognition"
    if languages:
        front["language"] = languages
    tags = ["whisper", "dama-asr", *([member.method] if member.method else [])]
    front["tags"] = tags + (["ctranslate2", "faster-whisper"] if fmt == "ct2" else [])
    results = results_of(member, test)
    name = "-".join(
        p for p in (base.rsplit("/", 1)[-1] if base else "whisper", member.method, member.language) if p
    )
    if results:
        front["model-index"] = [{"name": name, "results": results}]
    rows = [("base model", base or "not recorded"), ("method", f"{label} (`{member.method}`)" if member.method else label),
            ("format", FORMAT_LABEL[fmt] + (f", {details['quantization']}" if details.get("quantization") else ""))]  # fmt: skip
    if fmt != "peft":
        rows.append(
            ("language", f"{member.language} (forced)" if member.language else "detected (not forced)")
        )
    if member.trained_on:
        rows.append(("trained on", ", ".join(member.trained_on)))
    if member.metrics.get("train_data"):
        rows.append(("training data", str(member.metrics["train_data"])))
    rows += _score_rows(results)
    check = details.get("merge_check")
    if check:
        rows.append(
            ("merge check", f"max logit difference {check['max_abs_diff']:.2g} (limit {check['limit']:.2g})")
        )
    title = f"# {name} ({FORMAT_LABEL[fmt]})"
    parts = ["---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---", title, summary,
             _table(rows), "Exported by `dama export`; `dama_export.json` records the source and the checks.",
             "## Use", _usage(fmt, base, member.language)]  # fmt: skip
    return "\n\n".join(p for p in parts if p) + "\n"


def index_card(fmt: str, base: str, entries: list[tuple[Member, list[dict]]]) -> str:
    """README.md of a set's export: one folder per language, every language's results in model-index."""
    languages = [m.language for m, _ in entries if m.language]
    front: dict[str, Any] = {"base_model": base} if base else {}
    front |= {"library_name": LIBRARY[fmt], "pipeline_tag": "automatic-speech-recognition", "language": languages,
              "tags": ["whisper", "dama-asr", "adapter-set"] + (["ctranslate2"] if fmt == "ct2" else [])}  # fmt: skip
    results = [r for _, rs in entries for r in rs]
    stem = base.rsplit("/", 1)[-1] if base else "whisper"
    if results:
        front["model-index"] = [{"name": f"{stem}-{'-'.join(languages)}", "results": results}]
    rows = [(m.language or "?", f"`{m.language}/` ({_label(m.method)[0]})") for m, _ in entries]
    parts = ["---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---",
             f"# {stem}: one {FORMAT_LABEL[fmt]} per language", _table(rows + _score_rows(results)),
             "`export_index.json` maps each language to its folder; each folder has its own README.md."]  # fmt: skip
    return "\n\n".join(parts) + "\n"
