"""`distill`: one multilingual LoRA student learns from per-language LoRA experts (arXiv 2506.21555).

The teacher is a frozen copy of the base model holding the experts (an `AdapterSet`); each utterance is
taught by its own language's expert, run on the same inputs as the student. For one micro-batch, with
N labelled decoder positions (i over them, b(i) the utterance of position i, n_b its labelled count):

    token  = asr_weight * sum_i CE(z_s,i, y_i)                                   (as `asr`)
    js     = logit_weight * T^2 * sum_i JS(p_s,i || p_t,i),  p = softmax(z / T) over the vocabulary,
             JS(p || q) = 0.5 KL(p || m) + 0.5 KL(q || m),  m = (p + q) / 2     (natural log; <= ln 2)
    hidden = hidden_weight / L * [ sum_{l in decoder} sum_i (1 - cos(h_s,l,i, h_t,l,i))
                                 + sum_{l in encoder} sum_b n_b * mean_f (1 - cos(e_s,l,b,f, e_t,l,b,f)) ]

Decoder layers are hidden_states[1:] (each layer's output; the last after the final layer norm); the
encoder's likewise, over its 1500 frames, weighted by n_b so that it weighs per token like the rest.
L is the number of layers compared. Encoder layers are compared only when the encoder runs in the
step (no encoder cache) and the student or the experts adapt it; with the cached frozen encoder both
models get the same encoder outputs, so those terms would be identically zero. kd: 'layerwise' uses
all three terms, 'output' (the ablation: output-only KD) only token and js. Every term is a sum, as
LossParts requires: the trainer divides the step by its label-token count, so js and hidden come out
as per-position averages. Logits are compared in float32 over the full vocabulary.

The student starts from the experts' mean update (`init: expert-mean`, see
`dama_asr.adapters.expert_average`) or from its adapter's own init (`init: adapter`). Batches are best
language-homogeneous (TrainConfig.sampler 'language-homogeneous', as multilingual-distilwhisper
trains): a mixed batch runs the teacher once per language present.

With `prompt_loss` the prompt's tokens (the language token first) are labels too, which is what lets a
language-agnostic student keep detecting the language from its first token. They enter the token term
only: the experts were trained with the language given and never scored on predicting it, so their
distributions there say nothing worth copying (js and hidden run over the transcript's positions).
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from dama_asr.backbone.unwrap import base_model_of
from dama_asr.errors import DamaError
from dama_asr.precision import hold_frozen_weights
from dama_asr.train.data import IGNORE_INDEX, PROMPT_LENGTH
from dama_asr.train.logit_rows import logits_at
from dama_asr.train.objectives.base import LossParts, Objective, ObjectiveSetup, StepModel

log = logging.getLogger(__name__)

JS_TERM, HIDDEN_TERM = "js", "hidden"
KD_MODES = ("layerwise", "output")
INITS = ("expert-mean", "adapter")


class DistillError(DamaError, ValueError):
    """A distillation setup that cannot work (experts missing a language, an unsupported cache)."""


def text_rows(rows: torch.Tensor) -> torch.Tensor:
    """`rows` (B, T) without the prompt's label positions (<|xx|> <|transcribe|> <|notimestamps|>,
    the first PROMPT_LENGTH - 1 of every sequence): the transcript's tokens and <|eot|>."""
    out = rows.clone()
    out[:, : PROMPT_LENGTH - 1] = False
    return out


def js_divergence_sum(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """T^2 * sum over rows of JS(p_s || p_t), p = softmax(logits / T) along the last dim; float32, ().

    student_logits, teacher_logits: (..., V). Symmetric in its arguments, 0 for equal logits.
    """
    t = float(temperature)
    log_s = torch.log_softmax(student_logits.float() / t, dim=-1)  # (..., V)
    log_t = torch.log_softmax(teacher_logits.float() / t, dim=-1)
    # log p - log m = ln 2 - softplus(log q - log p): written through the difference d, so that nearly
    # equal distributions give ~d^2 / 8, not the rounding error of log m (~1e-6 at log p ~ -11).
    d = log_t - log_s
    ln2 = math.log(2.0)
    kl_s = (log_s.exp() * (ln2 - nn.functional.softplus(d))).sum()
    kl_t = (log_t.exp() * (ln2 - nn.functional.softplus(-d))).sum()
    return 0.5 * (kl_s + kl_t) * (t * t)


def cosine_distance_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum over rows of 1 - cos(a_i, b_i), cosine along the last dim; a, b (..., D) -> () float32."""
    return (1.0 - nn.functional.cosine_similarity(a.float(), b.float(), dim=-1)).sum()


def _rows_of(value, index: torch.Tensor):
    """The batch rows `index` of model inputs (a dict of tensors, tuples of tensors; others as they are)."""
    if isinstance(value, dict):
        return {key: _rows_of(v, index) for key, v in value.items()}
    if isinstance(value, torch.Tensor):
        return value[index]
    if isinstance(value, tuple):
        return tuple(_rows_of(v, index) for v in value)
    return value


@dataclass
class TeacherOutputs:
    """The experts' outputs for one batch, rows in the batch's order."""

    logits: torch.Tensor  # (N, V) at the labelled positions
    decoder: tuple[torch.Tensor, ...] | None  # hidden_states[1:], each (B, T, D)
    encoder: tuple[torch.Tensor, ...] | None  # hidden_states[1:], each (B, 1500, D); None if not run


class DistillObjective(Objective):
    """Token CE + JS on the logits (+ layer-wise cosine on hidden states) against per-language experts."""

    name = "distill"
    option_defaults = {  # noqa: RUF012 - read-only
        "experts": "",
        "kd": "layerwise",
        "temperature": 1.0,
        "hidden_weight": 1.0,
        "logit_weight": 1.0,
        "asr_weight": 1.0,
        "init": "expert-mean",
    }

    @classmethod
    def resolve_options(cls, options: dict) -> dict:
        out = super().resolve_options(options)
        if not out["experts"]:
            raise ValueError(
                "objective_options.experts: the folder of the language experts' adapter set is required "
                "(a saved AdapterSet, e.g. experts: sets/cy-en)"
            )
        for key, valid in (("kd", KD_MODES), ("init", INITS)):
            if out[key] not in valid:
                raise ValueError(f"objective_options.{key}: one of {', '.join(valid)}, got {out[key]!r}")
        if out["temperature"] <= 0:
            raise ValueError(f"objective_options.temperature: must be > 0, got {out['temperature']}")
        for key in ("hidden_weight", "logit_weight", "asr_weight"):
            if out[key] < 0:
                raise ValueError(f"objective_options.{key}: must be >= 0, got {out[key]}")
        return out

    def __init__(self) -> None:
        self.options: dict = {}
        self.teacher: nn.Module | None = None
        self.compare_encoder = False  # whether encoder layers can differ between student and teacher
        self.prompt_loss = False  # the prompt tokens are labels: CE only, the teachers are not asked

    def init_model(self, model: nn.Module, config) -> None:
        options = self.resolve_options(config.objective_options)
        if options["init"] != "expert-mean":
            return
        # Imported when used: peft and transformers stay out of `import dama_asr.train.objectives`.
        from dama_asr.adapters.expert_average import init_from_expert_mean

        report = init_from_expert_mean(model, options["experts"])
        fitted = [row for row in report.values() if row["residual"] is not None]
        worst = max((row["residual"] for row in fitted), default=0.0)
        log.info("student initialised from the mean of %s's experts: %d modules, largest relative "
                 "residual %.3g", options["experts"], len(fitted), worst)  # fmt: skip

    def prepare(self, setup: ObjectiveSetup) -> None:
        config = setup.config
        self.options = options = self.resolve_options(config.objective_options)
        self.prompt_loss = bool(config.prompt_loss)
        if config.cached_encoder_layers:
            raise DistillError(
                "objective distill: the frozen-bottom encoder cache (adapter.encoder_from > 1) feeds the "
                "student hidden states the teacher cannot take; pass --no-encoder-cache (encoder_cache: false)"
            )
        from dama_asr.adapters.sets import AdapterSet
        from dama_asr.backbone.loading import load_backbone

        adapter_set = AdapterSet.load(options["experts"])
        languages = sorted({e.language for e in setup.examples})
        missing = [code for code in languages if code not in adapter_set.languages]
        if missing:
            raise DistillError(
                f"objective_options.experts: {adapter_set.folder} has no expert for {', '.join(missing)} "
                f"(it holds {', '.join(adapter_set.languages)}); add experts for them to the set, or "
                "leave those languages out of the training manifest"
            )
        device = setup.device
        # Loading the tiny test model reseeds torch; the student's random stream must not notice.
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            base = load_backbone(config.model, device="cpu", precision="no").model
        base.config.use_cache = False
        teacher = adapter_set.load_into(base, languages)  # refuses another base by fingerprint
        teacher.requires_grad_(False)
        hold_frozen_weights(teacher, setup.backbone.precision)  # as the student's frozen base is held
        self.teacher = teacher.to(device).eval()
        teacher_encoder = any(
            ".lora_" in n for n, _ in base_model_of(teacher).model.encoder.named_parameters()
        )
        student_encoder = any(p.requires_grad for p in base_model_of(setup.model).model.encoder.parameters())
        if teacher_encoder and setup.encoder_cache is not None:
            raise DistillError(
                f"objective distill: the experts in {adapter_set.folder} adapt the encoder, but the run caches "
                "the frozen encoder's outputs, so the teacher would not be its experts; pass "
                "--no-encoder-cache (encoder_cache: false)"
            )
        self.compare_encoder = teacher_encoder or student_encoder
        log.info("distill: teacher %s with experts %s (%s KD)", config.model, ", ".join(languages),
                 options["kd"])  # fmt: skip

    # ---- the step ------------------------------------------------------------------------------
    def loss(self, model: StepModel, batch: dict) -> LossParts:
        if self.teacher is None:
            raise RuntimeError("objective distill: prepare() was not called before loss()")
        options, layerwise = self.options, self.options["kd"] == "layerwise"
        rows = batch["labels"] != IGNORE_INDEX  # (B, T)
        taught = text_rows(rows) if self.prompt_loss else rows  # where the teachers are asked
        asked = taught[rows]  # (N,) which of the labelled positions those are
        stored = (
            model.cross_kv.inject(batch["cross_kv"])
            if batch["cross_kv"] is not None
            else contextlib.nullcontext()
        )
        with logits_at(model.head, rows), stored:
            student = model.module(**batch["inputs"], output_hidden_states=layerwise)
        teacher = self.teacher_outputs(batch, rows, hidden=layerwise)
        targets = batch["labels"][rows]  # (N,)
        token = nn.functional.cross_entropy(student.logits.float(), targets, reduction="sum")
        js = js_divergence_sum(student.logits[asked], teacher.logits[asked], options["temperature"])
        extra = {JS_TERM: options["logit_weight"] * js}
        if layerwise:
            extra[HIDDEN_TERM] = options["hidden_weight"] * self._hidden_sum(student, teacher, taught)
        return LossParts(options["asr_weight"] * token, extra)

    def _hidden_sum(self, student, teacher: TeacherOutputs, rows: torch.Tensor) -> torch.Tensor:
        """The layer-wise term before its weight: per labelled position, the mean over layers of 1 - cos."""
        decoder_s = student.decoder_hidden_states[1:]
        total = sum(
            cosine_distance_sum(s[rows], t[rows]) for s, t in zip(decoder_s, teacher.decoder, strict=True)
        )
        layers = len(decoder_s)
        encoder_s = student.encoder_hidden_states
        if self.compare_encoder and encoder_s is not None and teacher.encoder is not None:
            tokens = rows.sum(dim=1).float()  # (B,) labelled positions per utterance
            for s, t in zip(encoder_s[1:], teacher.encoder, strict=True):
                per_frame = 1.0 - nn.functional.cosine_similarity(s.float(), t.float(), dim=-1)  # (B, F)
                total = total + (per_frame.mean(dim=1) * tokens).sum()
            layers += len(encoder_s) - 1
        return total / layers

    def teacher_outputs(self, batch: dict, rows: torch.Tensor, hidden: bool = True) -> TeacherOutputs:
        """Each utterance's expert on the batch's own inputs, without gradients, rows in batch order.

        One forward per language present (one for a language-homogeneous batch), re-assembled.
        """
        languages = batch["languages"]
        groups: dict[str, list[int]] = {}
        for i, code in enumerate(languages):
            groups.setdefault(code, []).append(i)
        if len(groups) == 1:
            return self._run_teacher(languages[0], batch["inputs"], rows, hidden)
        device = rows.device
        owner = rows.nonzero()[:, 0]  # (N,) the batch row of each labelled position, in row-major order
        logits, decoder, encoder = None, None, None
        for code, members in groups.items():
            index = torch.tensor(members, device=device)
            part = self._run_teacher(code, _rows_of(batch["inputs"], index), rows[index], hidden)
            if logits is None:
                logits = part.logits.new_empty((owner.shape[0], part.logits.shape[-1]))  # (N, V)
                decoder = _empty_like_rows(part.decoder, len(languages))
                encoder = _empty_like_rows(part.encoder, len(languages))
            logits[torch.isin(owner, index)] = part.logits  # a group's positions keep their relative order
            for full, piece in zip(decoder or (), part.decoder or (), strict=True):
                full[index] = piece
            for full, piece in zip(encoder or (), part.encoder or (), strict=True):
                full[index] = piece
        return TeacherOutputs(logits, decoder, encoder)

    def _run_teacher(self, code: str, inputs: dict, rows: torch.Tensor, hidden: bool) -> TeacherOutputs:
        from dama_asr.adapters.sets import activate

        teacher = self.teacher
        if teacher.active_adapter != code:
            activate(teacher, code)
        with torch.no_grad(), logits_at(base_model_of(teacher).proj_out, rows):
            out = teacher(**inputs, output_hidden_states=hidden)
        decoder = tuple(out.decoder_hidden_states[1:]) if hidden else None
        encoder = out.encoder_hidden_states
        encoder = tuple(encoder[1:]) if hidden and encoder is not None else None
        return TeacherOutputs(out.logits, decoder, encoder)


def _empty_like_rows(tensors: tuple[torch.Tensor, ...] | None, batch: int) -> tuple[torch.Tensor, ...] | None:
    if tensors is None:
        return None
    return tuple(t.new_empty((batch, *t.shape[1:])) for t in tensors)
