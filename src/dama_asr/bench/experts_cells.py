"""What each cell of the language-experts study trains and scores (`bench.experts_study`)."""

from __future__ import annotations

import json
from pathlib import Path

from dama_asr.data.manifest import read_manifest
from dama_asr.evaluate import evaluate_items
from dama_asr.inference.decoding import DecodingOptions

OPTIONS = DecodingOptions(batch_size=16)


def _scores(result: dict, languages: list[str]) -> dict:
    """Per-language WER/CER (Whisper-normalised) and their macro average; routing if any."""
    by = {lang: {"wer": result["by_language"][lang]["whisper"]["wer"], "cer": result["by_language"][lang]["whisper"]["cer"],
                 "utterances": result["by_language"][lang]["utterances"]} for lang in languages
          if lang in result["by_language"]}  # fmt: skip
    out = {"by_language": by, "average_wer": sum(v["wer"] for v in by.values()) / len(by),
           "average_cer": sum(v["cer"] for v in by.values()) / len(by),
           "pooled_wer": result["by_language"]["all"]["whisper"]["wer"]}  # fmt: skip
    if result.get("routing"):
        out["routing"] = result["routing"]
    return out


def _decoded_language_accuracy(result: dict) -> dict:
    """For rows that decode language-agnostic with one model: how often the decoded language was right."""
    utts = result["utterances"]
    right = sum(1 for u in utts if u.get("decoded_language") == u["language"])
    confusion: dict[str, dict[str, int]] = {}
    for u in utts:
        row = confusion.setdefault(u["language"], {})
        row[u.get("decoded_language")] = row.get(u.get("decoded_language"), 0) + 1
    return {"route": "own-detection", "accuracy": right / len(utts) if utts else None, "confusion": confusion}


def _evaluate(
    runner, backbone, route: str = "given", force_language: bool = True, frozen_encoder: bool = False
) -> dict:
    manifest = runner.manifest("test")
    result = evaluate_items(backbone, read_manifest(manifest), OPTIONS, force_language=force_language,
                            reuse_encoder_outputs=frozen_encoder, manifest=manifest, route=route)  # fmt: skip
    scores = _scores(result, list(runner.study.languages))
    if not force_language and "routing" not in scores:
        scores["routing"] = _decoded_language_accuracy(result)
    return scores


def _base(runner, precision: str = "auto"):
    from dama_asr.backbone.loading import load_backbone

    return load_backbone(runner.study.model, precision=precision).ready_for_inference()


def _costs(summaries: list[dict]) -> dict:
    return {"trainable_parameters": sum(s["trainable_parameters"] for s in summaries),
            "train_seconds": sum(s["wall_seconds"] for s in summaries),
            "peak_rss_gib": max(s["peak_rss_bytes"] for s in summaries) / 2**30,
            "precision": summaries[0]["precision"], "runs": len(summaries)}  # fmt: skip


def _chosen(run_dir: Path) -> Path:
    """The run's best-dev adapter (final/ when no dev set chose one); both end with checksums.json."""
    return run_dir / "best" if (run_dir / "best" / "checksums.json").is_file() else run_dir / "final"


def _train(runner, name: str, seed: int, adapter: dict, **fields) -> tuple[Path, dict]:
    from dama_asr.train import train

    out = runner.work / f"{name}__seed{seed}"
    config = runner._config(out, adapter, seed, **fields)
    if (out / "summary.json").is_file():
        return out, json.loads((out / "summary.json").read_text())
    return out, train(config, resume=(out / "checkpoints").is_dir())


def zero_shot(runner, seed: int) -> dict:
    return {"rows": {"zero-shot": _evaluate(runner, _base(runner), frozen_encoder=True)},
            "trainable_parameters": 0}  # fmt: skip


def _joint(runner, seed: int, rank: int, name: str, **fields) -> dict:
    from dama_asr.adapters import adapted_backbone

    adapter = {"method": "lora", **runner.study.expert, "r": rank}
    out, summary = _train(runner, name, seed, adapter, **fields)
    backbone = adapted_backbone(_base(runner, summary["precision"]), _chosen(out))
    frozen = not summary.get("encoder_cached_layers") and summary.get("encoder_cache", False)
    return {"rows": {name: _evaluate(runner, backbone, frozen_encoder=frozen)}, **_costs([summary])}


def joint_one(runner, seed: int) -> dict:
    return _joint(runner, seed, int(runner.study.expert.get("r", 64)), "joint-one")


def joint_total(runner, seed: int) -> dict:
    rank = int(runner.study.expert.get("r", 64)) * len(runner.study.languages)
    return _joint(runner, seed, rank, "joint-total", **runner.optim_with_lr(runner.study.joint_total))


def experts(runner, seed: int) -> dict:
    from dama_asr.adapters.sets import adapter_set_backbone

    folder = runner.experts_dir(seed)
    summary = json.loads((folder / "experts_summary.json").read_text())
    runs = list(summary["runs"].values())
    backbone = adapter_set_backbone(_base(runner, runs[0]["precision"]), folder / "experts")
    rows = {"experts (language given)": _evaluate(runner, backbone, "given"),
            "experts (Whisper LID)": _evaluate(runner, backbone, "whisper-lid")}  # fmt: skip
    return {"rows": rows, **_costs(runs)}


def mole(runner, seed: int) -> dict:
    from dama_asr.adapters import adapted_backbone
    from dama_asr.adapters.registry import get_method

    folder = runner.experts_dir(seed) / "experts"
    depth = _base(runner).model.config.encoder_layers
    options = get_method("mole").experts_options(folder, depth, l1=runner.study.mole.get("l1"),
                                                 router_hidden=runner.study.mole.get("router_hidden"))  # fmt: skip
    fields = {"objective": "router", "sampler": "language-balanced"}
    out, summary = _train(runner, "mole", seed, {"method": "mole", "extra": options}, **fields)
    backbone = adapted_backbone(_base(runner, summary["precision"]), _chosen(out))
    rows = {"MoLE language-aware": _evaluate(runner, backbone, "given"),
            "MoLE language-agnostic": _evaluate(runner, backbone, "router", force_language=False)}  # fmt: skip
    return {"rows": rows, "l1": options["l1"], **_costs([summary])}


def _kd(runner, seed: int, kd: str, learn_language: bool = False) -> dict:
    """A KD student; `learn_language`: with the prompt's tokens (the language first) among its labels
    (prompt_loss), the cross-entropy alone teaching it to detect the language from its first token."""
    from dama_asr.adapters import adapted_backbone

    folder = runner.experts_dir(seed) / "experts"
    adapter = {"method": "lora", **runner.study.expert, "r": int(runner.study.student.get("r", 256))}
    fields = {"objective": "distill", "sampler": "language-homogeneous",
              "objective_options": {"experts": str(folder), "kd": kd},
              **runner.optim_with_lr(runner.study.student)}  # fmt: skip
    if learn_language:
        fields["prompt_loss"] = True
    out, summary = _train(runner, f"kd-{kd}" + ("-lid" if learn_language else ""), seed, adapter, **fields)
    backbone = adapted_backbone(_base(runner, summary["precision"]), _chosen(out))
    frozen = summary.get("encoder_cache", False)
    name = ("KD layer-wise" if kd == "layerwise" else "KD output-only") + (
        ", LID learned" if learn_language else ""
    )
    # Language-agnostic as the paper decodes it (the student's own first-token language detection, over
    # all of Whisper's languages), and with the language given, as the experts' first row.
    rows = {f"{name} (language given)": _evaluate(runner, backbone, frozen_encoder=frozen),
            f"{name} (own detection)": _evaluate(runner, backbone, force_language=False, frozen_encoder=frozen)}  # fmt: skip
    return {"rows": rows, **_costs([summary])}


RUNNERS = {
    "zero-shot": zero_shot,
    "joint-one": joint_one,
    "joint-total": joint_total,
    "experts": experts,
    "mole": mole,
    "kd-layerwise": lambda runner, seed: _kd(runner, seed, "layerwise"),
    "kd-output": lambda runner, seed: _kd(runner, seed, "output"),
    "kd-lid": lambda runner, seed: _kd(runner, seed, "layerwise", learn_language=True),
}
