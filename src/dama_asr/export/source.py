"""What `dama export` reads: one saved adapter folder or an adapter set, and what each records.

A `dama train` folder (`best/`, `final/`) names its method and base model in dama_adapter.json and
its language in the README.md front matter; the run around it (`config.yaml`, `summary.json`,
`eval/epoch-K.json`) holds the training and dev data and the dev WER/CER. A set member has its
language as its name and its dev WER as the set's metric. Whatever a folder does not record is left
out of the export's card, never guessed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dama_asr.adapters import get_method, method_names, read_adapter_meta
from dama_asr.adapters.families.mole import EXPERTS_DIR
from dama_asr.adapters.sets import SET_INDEX, AdapterSet
from dama_asr.errors import DamaError
from dama_asr.languages import UnknownLanguageError, normalise_language


class ExportError(DamaError, ValueError):
    """An export that cannot be made; the message names the folder or option and what to do."""


@dataclass(frozen=True)
class Member:
    """One adapter to export (a set has one per language).

    language: the code the export transcribes in (forced in the generation config); None when the
    adapter records none or several and no --language was given. trained_on: the languages it was
    trained on, as recorded. metrics: dev_wer, dev_cer (fractions), normaliser, dev_data, train_data,
    as far as recorded.
    """

    folder: Path
    method: str | None
    language: str | None
    trained_on: tuple[str, ...] = ()
    metrics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ExportSource:
    """folder: what the user named. base_id: the base model it records; fingerprint: the base-weight
    fingerprint (`sets.base_fingerprint`) a set or a `dama train` adapter records, None for an adapter
    saved without one (older runs, plain peft folders)."""

    folder: Path
    is_set: bool
    members: tuple[Member, ...]
    base_id: str = ""
    fingerprint: str | None = None
    recorded_bases: tuple[str, ...] = ()  # model strings and folders a single adapter names

    @property
    def languages(self) -> list[str]:
        return [m.language for m in self.members if m.language]


def spec_of(method: str | None):
    """The registered spec of `method`; None for a plain peft adapter (or a peft type dama has no spec for)."""
    return get_method(method) if method in method_names() else None


def _code(language: str) -> str:
    try:
        return normalise_language(language)
    except UnknownLanguageError as err:
        raise ExportError(f"--language: {err}") from None


def read_source(folder: str | Path, language: str | None = None) -> ExportSource:
    """The adapter or set at `folder`, refused when it cannot be exported (MoLE, a run folder, ...)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(
            f"{folder}: no such folder; pass a `dama train` output (best/, final/) or an adapter set"
        )
    if (folder / SET_INDEX).is_file():
        return _read_set(folder, language)
    return _read_adapter(folder, language)


def _read_set(folder: Path, language: str | None) -> ExportSource:
    adapter_set = AdapterSet.load(folder)  # verifies every file against the set's checksums
    codes = adapter_set.languages
    if language is not None:
        code = _code(language)
        if code not in codes:
            raise ExportError(
                f"--language {language}: {folder} has no member {code!r}; it holds {', '.join(codes)}"
            )
        codes = [code]
    members = []
    for code in codes:
        record = adapter_set.member(code)
        metrics = dict(record.get("metrics") or {})
        if "wer" in metrics and "dev_wer" not in metrics:
            metrics["dev_wer"] = metrics.pop("wer")
        members.append(Member(folder / record["folder"], record.get("method"), code, (code,), metrics))
    return ExportSource(folder, True, tuple(members), adapter_set.base_model, adapter_set.fingerprint)


def _refuse_non_adapter(folder: Path) -> None:
    if (folder / "adapter_config.json").is_file() or any(folder.glob("model*.safetensors")):
        return
    if (folder / EXPERTS_DIR / SET_INDEX).is_file():
        raise ExportError(
            f"{folder}: a language-experts run; export its adapter set: dama export {folder / EXPERTS_DIR} ..."
        )
    if (folder / "best").is_dir() or (folder / "final").is_dir():
        raise ExportError(
            f"{folder}: a run folder; pass its best/ (or final/) adapter: dama export {folder / 'best'} ..."
        )
    raise ExportError(
        f"{folder} holds no adapter (no adapter_config.json); pass a `dama train` output folder"
    )


def _read_adapter(folder: Path, language: str | None) -> ExportSource:
    meta = read_adapter_meta(folder)
    method = meta.get("method")
    spec = spec_of(method)
    if spec is not None and spec.builds_on_experts:
        raise ExportError(
            f"{folder}: a MoLE routes per utterance; export its experts: dama export {folder / EXPERTS_DIR} ..."
        )
    _refuse_non_adapter(folder)
    metrics = run_metrics(folder)
    # Folders saved before dama wrote its own card have peft's blank one: the run's dev languages then.
    trained_on = card_languages(folder) or tuple(metrics.get("dev_by_language") or ())
    if language is not None:
        code: str | None = _code(language)
    else:
        code = trained_on[0] if len(trained_on) == 1 else None
    local = meta.get("base_model_local") or {}
    recorded = [meta.get("base_model"), meta.get("base_model_id"), local.get("path")]
    if not meta:  # a plain peft folder names its base only in adapter_config.json
        recorded.append(_peft_base(folder))
    member = Member(folder, method, code, trained_on, metrics)
    return ExportSource(
        folder, False, (member,), str(meta.get("base_model_id") or _peft_base(folder) or ""),
        meta.get("base_fingerprint"), tuple(dict.fromkeys(str(r) for r in recorded if r)),
    )  # fmt: skip


def _peft_base(folder: Path) -> str:
    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(config.get("base_model_name_or_path") or "") if isinstance(config, dict) else ""


def card_languages(folder: Path) -> tuple[str, ...]:
    """The `language` list of a saved adapter's README.md front matter (what `dama train` wrote)."""
    try:
        text = (folder / "README.md").read_text(encoding="utf-8")
    except OSError:
        return ()
    if not text.startswith("---\n") or "\n---" not in text[4:]:
        return ()
    try:
        front = yaml.safe_load(text[4 : text.index("\n---", 4)])
    except yaml.YAMLError:
        return ()
    found = front.get("language") if isinstance(front, dict) else None
    items = [found] if isinstance(found, str) else found if isinstance(found, list) else []
    codes = []
    for item in items:
        for part in str(item).split(","):  # a multilingual run writes "cy, en" as one entry
            try:
                codes.append(normalise_language(part))
            except UnknownLanguageError:
                continue
    return tuple(dict.fromkeys(codes))


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def run_metrics(folder: Path) -> dict:
    """Training data, dev data and the dev WER/CER of the epoch `folder` holds, from the run around it.

    best/ is the summary's best epoch, final/ its last; the dev scores come from that epoch's
    eval/epoch-K.json (per language and overall), under the run's deciding normaliser.
    """
    run = folder.parent
    if folder.name not in ("best", "final") or not (run / "config.yaml").is_file():
        return {}
    try:
        config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        config = {}
    config = config if isinstance(config, dict) else {}
    summary = _read_json(run / "summary.json")
    normaliser = (
        summary.get("dev_wer_normaliser") or (config.get("eval") or {}).get("normaliser") or "script_safe"
    )
    metrics = {"train_data": config.get("train"), "dev_data": config.get("dev"), "normaliser": normaliser}
    epochs = summary.get("epochs") or []
    epoch = (
        summary.get("best_epoch") if folder.name == "best" else (epochs[-1].get("epoch") if epochs else None)
    )
    if folder.name == "best" and summary.get("best_dev_wer") is not None:
        metrics["dev_wer"] = summary["best_dev_wer"]
    elif epochs and epochs[-1].get("dev_wer") is not None:
        metrics["dev_wer"] = epochs[-1]["dev_wer"]
    scores = _read_json(run / "eval" / f"epoch-{epoch}.json").get("by_language", {}) if epoch else {}
    overall = (scores.get("all") or {}).get(normaliser) or {}
    if overall:
        metrics["dev_wer"], metrics["dev_cer"] = overall.get("wer"), overall.get("cer")
    per_language = {
        code: {"wer": s[normaliser]["wer"], "cer": s[normaliser]["cer"]}
        for code, s in scores.items()
        if code != "all" and isinstance(s, dict) and isinstance(s.get(normaliser), dict)
    }
    if per_language:
        metrics["dev_by_language"] = per_language
    return {k: v for k, v in metrics.items() if v is not None}


def read_results(path: str | Path, normaliser: str = "script_safe") -> dict:
    """Test WER/CER per language ("all" overall) from a `dama eval` result JSON, plus its "source".

    The deciding normaliser is training's (script_safe); a result from before it existed falls
    back to Whisper's normaliser, and says so.
    """
    path = Path(path)
    result = _read_json(path)
    scores = result.get("by_language")
    if not isinstance(scores, dict) or "all" not in scores:
        raise ExportError(
            f"--results {path}: not a `dama eval` result JSON (no by_language); pass the file `dama eval --out` wrote"
        )
    if normaliser not in scores["all"]:
        normaliser = "whisper"
    table = {
        code: {"wer": s[normaliser]["wer"], "cer": s[normaliser]["cer"]}
        for code, s in scores.items()
        if isinstance(s, dict) and isinstance(s.get(normaliser), dict)
    }
    return {"source": str(path), "model": result.get("model"), "normaliser": normaliser, "by_language": table}


def check_base(source: ExportSource, model: str, base, check_names: bool = True) -> str:
    """Refuse a base model other than the one the source was built on; returns the base's fingerprint.

    A set, or an adapter that records one (`dama train` does), is compared by base-weight fingerprint,
    which is exact. An adapter without one (saved by older versions, or by plain peft) records only the
    model string it was trained with and the folder transformers read; those are compared by name
    (`check_names=False` skips that).
    """
    from dama_asr.adapters.card import portable_base_name
    from dama_asr.adapters.sets import base_fingerprint

    found = base_fingerprint(base)
    if source.fingerprint is not None:
        if found != source.fingerprint:
            raise ExportError(
                f"{source.folder}: built for base model {source.base_id or '(unnamed)'} (fingerprint "
                f"{source.fingerprint}), but --model {model} has fingerprint {found}; pass --model "
                f"{source.base_id or 'the base it was built on'}"
            )
        return found
    if not check_names or not source.recorded_bases:
        return found
    local = str(getattr(base, "name_or_path", "") or "")
    given = {model, local, portable_base_name(model, local)} - {""}
    if not any(_same(a, b) for a in given for b in source.recorded_bases):
        raise ExportError(
            f"{source.folder}: trained on base model {source.recorded_bases[0]}, not --model {model}; pass "
            f"--model {source.recorded_bases[0]} (or --no-base-check if {model} is that very model under "
            "another name: a single adapter records no weight fingerprint to prove it)"
        )
    return found


def _same(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        pa, pb = Path(a).expanduser(), Path(b).expanduser()
        return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()
    except OSError:
        return False
