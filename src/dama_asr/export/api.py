"""`export_adapter`: a saved adapter (or every language of an adapter set) as a standard artefact.

Formats:
    hf    a merged transformers folder: float32 safetensors, tokenizer.json, processor files, and a
          generation config forcing the adapter's language and task (merge checked on logits first)
    peft  a plain PEFT adapter folder (`PeftModel.from_pretrained(base, DIR)`); PiSSA/MiLoRA are
          already saved as plain LoRAs on the original base. Not for full fine-tunes.
    ct2   CTranslate2 (faster-whisper), converted from a temporary hf export
A set exports one folder per language, `DIR/<lang>/`, plus `DIR/export_index.json` and a README.md.
Every model folder gets a model card (README.md, with Hub `model-index` results) and
`dama_export.json` (source, base fingerprint, checks). The output is written atomically: a refused
or failed export leaves nothing behind, and an existing DIR is replaced only with `force`.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from pathlib import Path

from dama_asr import __version__
from dama_asr.adapters import load_adapted
from dama_asr.adapters.card import portable_base_name
from dama_asr.adapters.io import CHECKSUMS, CHECKSUMS_FORMAT
from dama_asr.atomic import atomic_dir, atomic_write_text
from dama_asr.backbone.loading import EMBEDDED, Backbone, load_backbone
from dama_asr.export.card import export_card, index_card, results_of
from dama_asr.export.ct2 import check_config, convert_into
from dama_asr.export.formats import DEFAULT_QUANTIZATION, FORMATS, QUANTIZATIONS
from dama_asr.export.merged import merged_model, save_hf
from dama_asr.export.source import (
    ExportError,
    ExportSource,
    Member,
    check_base,
    read_results,
    read_source,
    spec_of,
)
from dama_asr.integrity import write_manifest

EXPORT_INDEX = "export_index.json"
EXPORT_RECORD = "dama_export.json"
EXPORT_FORMAT = "dama-export"


def _check_options(fmt: str, quantization: str | None, out: Path, source: Path, force: bool) -> None:
    if fmt not in FORMATS:
        raise ExportError(f"--format: one of {', '.join(FORMATS)}, got {fmt!r}")
    if quantization is not None and fmt != "ct2":
        raise ExportError(
            f"--quantization {quantization}: only for --format ct2 (an {fmt} export keeps float32 weights)"
        )
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ExportError(f"--quantization: one of {', '.join(QUANTIZATIONS)}, got {quantization!r}")
    src, dest = source.resolve(), out.resolve()
    if dest == src or dest in src.parents or src in dest.parents:
        raise ExportError(f"--out {out}: inside or around the source {source}; choose a folder elsewhere")
    if out.exists() and not force:
        raise ExportError(f"--out {out}: exists; pass --force to replace it (nothing was written)")


def _refuse_format(source: ExportSource, fmt: str) -> None:
    for member in source.members:
        spec = spec_of(member.method)
        if fmt == "peft" and spec is not None and spec.saves_full_model:
            raise ExportError(
                f"{member.folder}: a full fine-tune has no adapter to export as peft; use --format hf (or ct2)"
            )


def export_adapter(
    source: str | Path,
    out: str | Path,
    fmt: str,
    model: str = EMBEDDED,
    language: str | None = None,
    quantization: str | None = None,
    results: str | Path | None = None,
    force: bool = False,
    check_base_name: bool = True,
) -> dict:
    """Export `source` (a `dama train` folder or an adapter set) for base `model` into `out`.

    language: for a set, export that member only; for one adapter, the language to force (default:
    the one it was trained on, if one). quantization: ct2 only (default float32). results: a `dama
    eval` result JSON whose test WER/CER go into the model cards. check_base_name: a single adapter
    records its base by name only; False skips that comparison (a set's fingerprint is always checked).
    Returns a summary: out, format, per-language records (merge check, folder), notes.
    """
    out, source = Path(out), Path(source)
    _check_options(fmt, quantization, out, source, force)
    src = read_source(source, language)
    _refuse_format(src, fmt)
    test = read_results(results) if results is not None else None
    backbone = load_backbone(model, device="cpu", precision="no")  # float32 weights: merges stay exact
    fingerprint = check_base(src, model, backbone.model, check_base_name)
    base_id = portable_base_name(model, str(getattr(backbone.model, "name_or_path", "") or ""))
    context = {"format": fmt, "model": model, "base_id": base_id, "fingerprint": fingerprint,
               "quantization": (quantization or DEFAULT_QUANTIZATION) if fmt == "ct2" else None,
               "base_check": _base_check(src, check_base_name)}  # fmt: skip
    notes = _notes(src, backbone, test, forces_language=fmt != "peft")
    records = {}
    with atomic_dir(out) as scratch:
        for i, member in enumerate(src.members):
            last = i == len(src.members) - 1
            base = backbone.model if last else copy.deepcopy(backbone.model)  # merging changes the base
            dest = scratch / member.language if src.is_set else scratch
            dest.mkdir(exist_ok=True)
            records[member.language or ""] = _export_member(member, base, backbone, dest, context, test)
        if src.is_set:
            _write_index(scratch, src, context, records, test)
    return {"out": str(out), "format": fmt, "source": str(source), "is_set": src.is_set,
            "quantization": context["quantization"], "members": records, "notes": notes}  # fmt: skip


def _base_check(src: ExportSource, check_names: bool) -> str:
    if src.fingerprint is not None:
        return "fingerprint"
    if not src.recorded_bases:
        return "none recorded"
    return "by name" if check_names else "skipped (--no-base-check)"


def _notes(src: ExportSource, backbone: Backbone, test: dict | None, forces_language: bool) -> list[str]:
    notes = []
    for m in src.members if forces_language else ():
        if m.language is None:
            among = f" (trained on {', '.join(m.trained_on)})" if m.trained_on else ""
            notes.append(f"{m.folder}: no single language recorded{among}; not forced, Whisper detects it "
                         "(give --language to force one)")  # fmt: skip
        elif m.trained_on and m.language not in m.trained_on:
            notes.append(f"{m.folder}: forcing {m.language}, but it was trained on {', '.join(m.trained_on)}")
    if not (backbone.model.generation_config.suppress_tokens or []):
        notes.append("the base model's generation config suppresses no tokens: neither will the export")
    if test and test.get("model") and str(src.folder.name) not in str(test["model"]):
        notes.append(f"--results {test['source']} scored {test['model']}, which does not name {src.folder}")
    return notes


def _export_member(
    member: Member, base, backbone: Backbone, dest: Path, context: dict, test: dict | None
) -> dict:
    fmt = context["format"]
    record = {"folder": dest.name if dest.name == member.language else ".", "method": member.method,
              "language": member.language}  # fmt: skip
    if fmt == "peft":
        _copy_peft(member, base, dest)
    else:
        merged, check = merged_model(base, member)
        record["merge_check"] = check.to_dict()
        if fmt == "hf":
            save_hf(merged, backbone.processor, dest)
            record["generation"] = {"language": merged.generation_config.language, "task": "transcribe"}
        else:
            with tempfile.TemporaryDirectory(prefix=".hf-", dir=dest) as tmp:  # removed before the rename
                save_hf(merged, backbone.processor, Path(tmp))
                convert_into(Path(tmp), dest, context["quantization"])
            # The decoder's token budget: CTranslate2's folder does not hold it, `dama transcribe` caps by it.
            record["ct2_config"] = {**check_config(dest, merged.generation_config),
                                    "max_length": merged.generation_config.max_length}  # fmt: skip
    details = {"quantization": context["quantization"], "merge_check": record.get("merge_check")}
    atomic_write_text(dest / "README.md", export_card(fmt, member, context["base_id"], details, test))
    provenance = {"format": EXPORT_FORMAT, "version": 1, "dama_asr": __version__, "export_format": fmt,
                  "source": str(member.folder.resolve()), "method": member.method, "language": member.language,
                  "base_model": context["base_id"], "base_model_given": context["model"],
                  "base_fingerprint": context["fingerprint"], "base_check": context["base_check"],
                  "quantization": context["quantization"], "metrics": member.metrics,
                  **{k: record[k] for k in ("merge_check", "ct2_config") if k in record}}  # fmt: skip
    atomic_write_text(
        dest / EXPORT_RECORD, json.dumps(provenance, indent=2, allow_nan=False, default=str) + "\n"
    )
    if fmt == "peft":
        write_manifest(dest, CHECKSUMS, CHECKSUMS_FORMAT)  # last: `dama --adapter DIR` verifies it
    return record


def _copy_peft(member: Member, base, dest: Path) -> None:
    """The adapter's files as saved (the card and checksums are rewritten), after checking that the
    adapter applies to this base."""
    load_adapted(base, member.folder)  # refuses a damaged folder or one of other shapes, by name
    for path in sorted(p for p in member.folder.iterdir() if p.is_file()):
        if path.name not in ("README.md", CHECKSUMS, EXPORT_RECORD):
            shutil.copyfile(path, dest / path.name)


def _write_index(scratch: Path, src: ExportSource, context: dict, records: dict, test: dict | None) -> None:
    index = {"format": EXPORT_FORMAT, "version": 1, "export_format": context["format"],
             "base_model": context["base_id"], "base_fingerprint": context["fingerprint"],
             "quantization": context["quantization"], "source": str(src.folder.resolve()),
             "languages": {code: {"folder": r["folder"], "method": r["method"]} for code, r in records.items()}}  # fmt: skip
    atomic_write_text(scratch / EXPORT_INDEX, json.dumps(index, indent=2, allow_nan=False) + "\n")
    entries = [(m, results_of(m, test)) for m in src.members]
    atomic_write_text(scratch / "README.md", index_card(context["format"], context["base_id"], entries))
