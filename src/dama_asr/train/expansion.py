"""Language expansion of an adapter set (LoRA-Whisper, arXiv 2406.06619): a new language's LoRA joins a
set of per-language LoRAs, and nothing the set held changes.

    summary = expand_set("runs/lw/experts", "lt", template, "runs/lw+lt", ExpansionOptions(init="moe"))

1. Similarity: Whisper's language-detection probabilities from the BASE model (adapters off), over up
   to `similarity_utterances` of the new language's training audio (a seeded sample), restricted to the
   set's languages and averaged (`inference.lid.mean_language_probabilities`): the ranking, most
   similar first, sums to 1. Fewer than `min_similarity_utterances` readable utterances is an error.
2. The new LoRA takes the set's members' adapter config (rank, targets, encoder: read from the most
   similar member's peft files) and starts
     random: from peft's own init (kaiming A, zero B);
     warm:   as the most similar member's LoRA (its A and B);
     moe:    beside the top-k members' LoRAs, frozen and gated, as one LoRA of rank (k+1) r:
             h = W x + sum_k g_k B_k A_k x + B_new A_new x, the gates the top-k similarities renormalised
             to sum 1, fixed (`gates: similarity`) or learned from there (`gates: learned`, one scalar
             per member and Whisper layer, see `adapters.lora_start`).
   It trains with the ordinary trainer (`dama_asr.train.train`) on the new language's items only.
3. A new set at OUT/experts: the original members copied byte for byte (their index records too),
   plus the new language's best adapter (final/ without a dev set). The original set is only read,
   so a failure anywhere leaves it as it was; `replace` swaps out the member of a language the set has.

The seam for warm and moe is the adapter config, `AdapterConfig.extra["start"]`, executed by the LoRA
family once peft has built the layers (`dama_asr.adapters.lora_start`), not an objective option (as
`distill`'s expert-mean init is). Where an adapter starts and which of its rows train belong to the
adapter, as PiSSA's init does: they hold for any objective, and dama_adapter.json records which
members a LoRA started from. And LoRA MoE is more than starting values: the frozen rows and the
learned gates are part of the model while it trains and are folded into one plain peft LoRA when it
is saved, which only the method's `save` can do; an objective sees neither the structure nor the save.

Layout of OUT (`--experts OUT` then finds the expanded set, as it finds an experts run's):

    expansion.json                 what was asked and done: options, members used, gates, the run's summary
    similarity.json                the ranking and the utterances it was estimated on
    data/<lang>.{train,dev}.jsonl  the new language's items (absolute audio paths)
    run/                           the `dama train` run of the new LoRA
    experts/                       the expanded adapter set
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dama_asr.adapters.config import AdapterConfig
from dama_asr.adapters.lora_start import LoraStart, read_member
from dama_asr.adapters.plan import plan_modules
from dama_asr.adapters.sets import AdapterSet, base_fingerprint
from dama_asr.atomic import atomic_write_text
from dama_asr.backbone.loading import Backbone, load_backbone
from dama_asr.data.audio import MAX_SECONDS, SAMPLE_RATE, AudioError, load_audio
from dama_asr.data.manifest import Utterance, read_manifest, write_manifest
from dama_asr.errors import DamaError
from dama_asr.features.log_mel import log_mel
from dama_asr.inference.lid import mean_language_probabilities
from dama_asr.languages import normalise_language
from dama_asr.precision import resolve_precision
from dama_asr.train.config import TrainConfig
from dama_asr.train.experts import EXPERTS_DIR
from dama_asr.train.loop import train

log = logging.getLogger(__name__)

INITS = ("random", "warm", "moe")
GATES = ("similarity", "learned")
SUMMARY = "expansion.json"
SIMILARITY = "similarity.json"
_MODULE = re.compile(r"^model\.(?P<side>encoder|decoder)\.layers\.(?P<layer>\d+)\.(?P<linear>.+)$")


class ExpansionError(DamaError, ValueError):
    """An expansion that cannot run (the language is there, another base, too little audio, OUT exists)."""


@dataclass(frozen=True)
class ExpansionOptions:
    """How the new language's LoRA starts (module doc) and what may be overwritten.

    init: random | warm | moe.  top_k: moe's number of members.  gates: moe's similarity | learned.
    replace: retrain a language the set already has.  force: start OUT over (an earlier expansion's).
    resume: continue an interrupted expansion in OUT (same set, language and start), from its run's
    last checkpoint; a finished one is returned as it is.
    similarity_utterances / min_similarity_utterances: the most and fewest utterances the similarity
    is estimated on.  lid_batch_size: utterances per language-detection step.
    """

    init: str = "warm"
    top_k: int = 2
    gates: str = "similarity"
    replace: bool = False
    force: bool = False
    resume: bool = False
    similarity_utterances: int = 100
    min_similarity_utterances: int = 5
    lid_batch_size: int = 8

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ExpansionError(f"init: one of {', '.join(INITS)}, got {self.init!r}")
        if self.gates not in GATES:
            raise ExpansionError(f"gates: one of {', '.join(GATES)}, got {self.gates!r}")
        if self.top_k < 1:
            raise ExpansionError(f"top_k: at least 1, got {self.top_k}")
        if not 1 <= self.min_similarity_utterances <= self.similarity_utterances:
            raise ExpansionError(
                "similarity_utterances: at least min_similarity_utterances "
                f"({self.min_similarity_utterances}, itself >= 1), got {self.similarity_utterances}"
            )
        if self.lid_batch_size < 1:
            raise ExpansionError(f"lid_batch_size: at least 1, got {self.lid_batch_size}")
        if self.resume and self.force:
            raise ExpansionError("resume and force: choose one (force starts OUT over, resume continues it)")


def similarity_ranking(
    backbone: Backbone,
    items: list[Utterance],
    candidates: list[str],
    limit: int = 100,
    minimum: int = 5,
    seed: int = 0,
    batch_size: int = 8,
) -> dict:
    """How much the items sound like each candidate: {"ranking": [{"language", "probability"}] most
    similar first (probabilities sum to 1), "utterances": ids used, "unreadable": ids skipped}.

    Up to `limit` readable items of a seeded shuffle, their first 30 s; ExpansionError below `minimum`.
    """
    order = list(items)
    random.Random(seed).shuffle(order)
    audios: list[np.ndarray] = []
    used, unreadable = [], []
    for item in order:
        if len(audios) == limit:
            break
        try:
            audios.append(load_audio(item.audio, max_seconds=None)[: int(MAX_SECONDS * SAMPLE_RATE)])
            used.append(item.id)
        except AudioError as err:
            log.warning("similarity: skipped %s (%s)", item.id, err)
            unreadable.append(item.id)
    if len(audios) < minimum:
        raise ExpansionError(
            f"similarity: {len(audios)} readable utterance(s) of {len(items)} ({len(unreadable)} unreadable); "
            f"the estimate needs at least {minimum}: give more training audio of the new language"
        )
    # Features first, outside detection's autocast: there the feature extractor's own matmul would run
    # in bf16 on a CPU and fail to become numpy.
    features = log_mel(backbone.processor.feature_extractor, audios)  # (N, mels, 3000)
    means = mean_language_probabilities(backbone, features, candidates, batch_size)
    ranking = [{"language": code, "probability": p} for code, p in means.items()]
    return {"ranking": ranking, "utterances": used, "unreadable": unreadable}


def member_adapter(folder: Path, whisper_config) -> AdapterConfig:
    """The uniform-rank plain LoRA config that reproduces a saved member's modules and scale (no start).

    ExpansionError for members no such config reproduces (ranks varying per module, targets that
    differ between encoder and decoder): expand sets of `dama train --method lora-whisper | experts`.
    """
    member = read_member(folder)
    ranks = set(member.ranks.values())
    scales = {member.scale(m) for m in member.ranks}
    if len(ranks) != 1 or len(scales) != 1:
        raise ExpansionError(
            f"{folder}: ranks {sorted(ranks)} and scales {sorted(scales)} vary across modules; expansion "
            "needs members of one uniform-rank LoRA (dama train --method lora-whisper or experts)"
        )
    parsed = [_MODULE.match(m) for m in sorted(member.ranks)]
    if not all(parsed):
        raise ExpansionError(
            f"{folder}: adapts modules outside Whisper's layers; not a member dama can extend"
        )
    encoder_layers = [int(p["layer"]) for p in parsed if p["side"] == "encoder"]
    cfg = AdapterConfig(
        method="lora",
        r=ranks.pop(),
        alpha_policy="ratio",
        alpha_ratio=scales.pop(),
        targets=tuple(sorted({p["linear"] for p in parsed})),
        encoder=bool(encoder_layers),
        encoder_from=min(encoder_layers, default=0) + 1,
        dropout=float(member.config.get("lora_dropout") or 0.0),
    )
    planned = {row.name for row in plan_modules(whisper_config, cfg)}
    if planned != set(member.ranks):
        odd = sorted(planned ^ set(member.ranks))[0]
        raise ExpansionError(
            f"{folder}: its modules are not those of one LoRA config (e.g. {odd}); expansion needs members "
            "of dama train --method lora-whisper or experts"
        )
    return cfg


def new_language_adapter(
    set_folder: Path, adapter_set: AdapterSet, ranking: list[dict], options: ExpansionOptions, whisper_config
) -> tuple[AdapterConfig, dict]:
    """(the new LoRA's config, {"members": codes it starts from, "gates"}) for `options.init`."""
    codes = [row["language"] for row in ranking]
    folders = {c: (set_folder / adapter_set.member(c)["folder"]).resolve() for c in codes}
    reference = member_adapter(folders[codes[0]], whisper_config)
    if options.init == "random":
        return reference, {"members": [], "gates": []}
    if options.init == "warm":
        start = LoraStart("copy", (str(folders[codes[0]]),))
        return dataclasses.replace(reference, extra=start.to_extra()), {"members": codes[:1], "gates": []}
    if options.top_k > len(codes):
        raise ExpansionError(
            f"top_k: {options.top_k}, but {set_folder} has {len(codes)} other language(s) ({', '.join(codes)})"
        )
    top = codes[: options.top_k]
    for code in top[1:]:
        other = member_adapter(folders[code], whisper_config)
        if dataclasses.replace(other, dropout=reference.dropout) != reference:
            raise ExpansionError(
                f"{set_folder}: members {codes[0]} and {code} differ in rank, scale or targets; LoRA MoE "
                "stacks members of one config"
            )
    probabilities = [ranking[i]["probability"] for i in range(len(top))]
    total = sum(probabilities)
    gates = [p / total if total > 0 else 1.0 / len(top) for p in probabilities]
    frozen = reference.r * len(top)
    start = LoraStart("mixture", tuple(str(folders[c]) for c in top), tuple(gates),
                      options.gates == "learned", frozen)  # fmt: skip
    cfg = dataclasses.replace(reference, r=frozen + reference.r, extra=start.to_extra())
    return cfg, {"members": top, "gates": gates}


def _language_items(manifest: str, language: str, where: str) -> list[Utterance]:
    items = read_manifest(manifest)
    mine = [i for i in items if i.language and normalise_language(i.language) == language]
    others = sorted({i.language or "(none)" for i in items} - {i.language for i in mine})
    if not mine:
        raise ExpansionError(f"{where} {manifest}: no {language} utterances (it holds {', '.join(others)})")
    if others:
        log.warning("%s %s: %d item(s) of other languages (%s) left out", where, manifest,
                    len(items) - len(mine), ", ".join(others))  # fmt: skip
    return mine


def _device(requested: str) -> str:
    """The run's device for language detection too: a GPU when the run gets one, else the CPU."""
    if requested == "cpu" or not torch.cuda.is_available():
        return "cpu"
    return "cuda" if requested == "auto" else requested


def set_folder_of(path: str | Path) -> Path:
    """An adapter set folder, or a run folder holding one at experts/ (an experts or expansion run)."""
    folder = Path(path)
    return folder / EXPERTS_DIR if (folder / EXPERTS_DIR / "adapter_set.json").is_file() else folder


def _check_out(out: Path, force: bool) -> None:
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not force:
        raise ExpansionError(
            f"--out {out} already exists; choose another folder, or --force to start it over"
        )
    if not (out / SUMMARY).is_file():
        raise ExpansionError(
            f"--out {out}: --force starts over only a folder `dama expand` wrote (no {SUMMARY})"
        )


def expand_set(
    set_path: str | Path,
    language: str,
    template: TrainConfig,
    out: str | Path,
    options: ExpansionOptions,
    report: Callable[[dict], None] | None = None,
) -> dict:
    """Train `language`'s LoRA beside the set's members and save the expanded set (module doc).

    template: the new LoRA's recipe (model, train/dev manifests of the new language, optimiser,
    precision, ...); its adapter and output_dir are replaced by the set's members' and OUT/run.
    report: called with the similarity and the start ({"similarity", "start", ...}) before training.
    Returns the summary written to OUT/expansion.json. Everything is checked before OUT is written.
    """
    set_folder, out, code = set_folder_of(set_path), Path(out), normalise_language(language)
    if options.resume and (out / SUMMARY).is_file():
        return _resume(set_folder, code, template, out, options)
    _check_out(out, options.force)
    adapter_set = AdapterSet.load(set_folder)
    if code in adapter_set.languages and not options.replace:
        raise ExpansionError(
            f"{set_folder} already has {code}; pass --replace to train it again, or expand by another language"
        )
    candidates = [c for c in adapter_set.languages if c != code]
    if not candidates:
        raise ExpansionError(f"{set_folder}: no language but {code} to compare the new audio with")
    backbone = _checked_base(adapter_set, template)
    train_items = _language_items(template.train, code, "--train")
    dev_items = _language_items(template.dev, code, "--dev") if template.dev else []
    similarity = similarity_ranking(
        backbone, train_items, candidates, options.similarity_utterances,
        options.min_similarity_utterances, template.seed, options.lid_batch_size,
    )  # fmt: skip
    adapter, started = new_language_adapter(
        set_folder, adapter_set, similarity["ranking"], options, backbone.model.config
    )
    del backbone  # the run loads its own
    if out.exists():
        shutil.rmtree(out)  # _check_out allowed it: --force over an earlier expansion
    record = {"format": "dama-expansion", "status": "started", "set": str(set_folder.resolve()),
              "language": code, "replaced": code in adapter_set.languages, **dataclasses.asdict(options),
              "start": started, "adapter": adapter.to_dict()}  # fmt: skip
    atomic_write_text(out / SUMMARY, json.dumps(record, indent=2, allow_nan=False))
    atomic_write_text(out / SIMILARITY, json.dumps({"language": code, **similarity}, indent=2))
    if report is not None:
        report({"language": code, "similarity": similarity, "start": started, "init": options.init,
                "gates": options.gates})  # fmt: skip
    train_path = write_manifest(out / "data" / f"{code}.train.jsonl", train_items, relative=False)
    dev_path = (
        write_manifest(out / "data" / f"{code}.dev.jsonl", dev_items, relative=False) if dev_items else ""
    )
    config = dataclasses.replace(template, train=str(train_path), dev=str(dev_path),
                                 output_dir=str(out / "run"), adapter=adapter)  # fmt: skip
    record |= _train_into_set(config, adapter_set, code, out)
    record |= {"status": "finished", "similarity": similarity["ranking"]}
    atomic_write_text(out / SUMMARY, json.dumps(record, indent=2, allow_nan=False))
    return record


# What must match for `resume` to continue an expansion rather than start another.
_RESUME_KEYS = ("set", "language", "init", "top_k", "gates", "replace", "similarity_utterances")


def _resume(set_folder: Path, code: str, template: TrainConfig, out: Path, options: ExpansionOptions) -> dict:
    """Continue the expansion recorded in OUT/expansion.json: its run from the last checkpoint, then
    the set; a finished record is returned unchanged. Anything asked differently is refused."""
    record = json.loads((out / SUMMARY).read_text(encoding="utf-8"))
    asked = {"set": str(set_folder.resolve()), "language": code, **dataclasses.asdict(options)}
    differs = [k for k in _RESUME_KEYS if record.get(k) != asked[k]]
    if differs:
        raise ExpansionError(
            f"--resume {out}: it holds another expansion ({', '.join(f'{k} {record.get(k)!r}' for k in differs)}); "
            "ask for the same one, or --force to start it over"
        )
    if record.get("status") == "finished":
        return record
    log.info("expand: resuming %s in %s", code, out)
    data = out / "data"
    dev_path = data / f"{code}.dev.jsonl"
    config = dataclasses.replace(template, train=str(data / f"{code}.train.jsonl"),
                                 dev=str(dev_path) if dev_path.is_file() else "", output_dir=str(out / "run"),
                                 adapter=AdapterConfig.from_dict(record["adapter"]))  # fmt: skip
    resume = (out / "run" / "config.yaml").is_file()  # else the run had not started
    record |= _train_into_set(config, AdapterSet.load(set_folder), code, out, resume=resume)
    similarity = json.loads((out / SIMILARITY).read_text(encoding="utf-8"))
    record |= {"status": "finished", "similarity": similarity["ranking"]}
    atomic_write_text(out / SUMMARY, json.dumps(record, indent=2, allow_nan=False))
    return record


def _checked_base(adapter_set: AdapterSet, template: TrainConfig) -> Backbone:
    """The run's base, refused unless it is the set's (fingerprint); on the run's device for detection."""
    backbone = load_backbone(template.model, device="cpu", precision="no")
    found = base_fingerprint(backbone.model)
    if found != adapter_set.fingerprint:
        raise ExpansionError(
            f"{adapter_set.folder}: built for base {adapter_set.base_model or '(unnamed)'} (fingerprint "
            f"{adapter_set.fingerprint}), but --model {template.model} has fingerprint {found}; "
            f"expand on {adapter_set.base_model or 'the base the set was built on'}"
        )
    device = _device(template.device)
    backbone.model.to(device)
    backbone.precision = resolve_precision(template.precision, device)
    return backbone


def _train_into_set(
    config: TrainConfig, adapter_set: AdapterSet, code: str, out: Path, resume: bool = False
) -> dict:
    """Train the new LoRA, then save the set with it at OUT/experts (the others copied byte for byte)."""
    finished = out / "run" / "summary.json"
    if resume and finished.is_file():  # trained, interrupted before the set was saved
        run = json.loads(finished.read_text(encoding="utf-8"))
    else:
        log.info("expand: training %s -> %s", code, config.output_dir)
        run = train(config, resume=resume)
    best = out / "run" / "best"
    member = best if (best / "adapter_config.json").is_file() else out / "run" / "final"
    if code in adapter_set.languages:  # --replace
        adapter_set.remove(code)
    wer = run.get("best_dev_wer")
    adapter_set.add(code, member, metrics={"dev_wer": wer} if wer is not None else None)
    experts = adapter_set.save(out / EXPERTS_DIR)
    return {"member": str(member), "experts": str(experts), "languages": adapter_set.languages, "run": run}


__all__ = [
    "ExpansionError",
    "ExpansionOptions",
    "expand_set",
    "member_adapter",
    "new_language_adapter",
    "set_folder_of",
    "similarity_ranking",
]
