"""What a training objective is: a strategy that turns one micro-batch into summed loss terms.

The trainer owns everything that must be identical for every objective: sharding, accumulation, the
exact global normalisation (the step's loss is the sum over the global batch divided by its number of
label tokens, all-reduced), backward, clipping and the optimizer. An objective owns only the forward
and the loss, so a new one (distillation from a teacher, a router loss) is a new module, not a branch
in the loop.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from dama_asr.train.data import IGNORE_INDEX
from dama_asr.train.logit_rows import logits_at

if TYPE_CHECKING:
    from dama_asr.backbone.loading import Backbone
    from dama_asr.features.cross_kv import CrossKV
    from dama_asr.features.encoder_cache import EncoderCache
    from dama_asr.train.config import TrainConfig
    from dama_asr.train.data import Example

# The name `loss_terms` gives the token loss when an objective adds terms of its own.
TOKEN_TERM = "token"


@dataclass(frozen=True)
class LossParts:
    """One micro-batch's loss, every part a scalar SUM over its labelled tokens (not a mean).

    The trainer adds `extra` to `token_loss` and divides by the global batch's label-token count, so a
    per-batch quantity (a router's load-balancing loss) must be scaled by this micro-batch's token
    count to weigh the same in 1 x 4 and 2 x 2 launches. Weights between terms are the objective's.
    """

    token_loss: torch.Tensor  # () summed cross-entropy of the labelled tokens
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> () summed term

    def total(self) -> torch.Tensor:
        # No extra terms: the token loss itself, not `token_loss + 0`, so the asr objective's
        # gradients are those of the loop before objectives existed, bit for bit.
        total = self.token_loss
        for value in self.extra.values():
            total = total + value
        return total


@dataclass(frozen=True)
class StepModel:
    """What an objective sees of the model being trained, for one step."""

    module: nn.Module  # call this one: under DDP it is the wrapper whose backward syncs gradients
    head: nn.Module  # Whisper's proj_out inside `module`
    cross_kv: CrossKV | None  # the stored frozen cross-attention K/V, when the run keeps them

    def labelled_logits(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (N, V), targets (N,)) at the N labelled decoder positions of `batch`.

        Only labelled rows are projected onto the 51,865-token vocabulary (see `logit_rows`), and the
        batch's stored cross-attention K/V, if any, stand in for the frozen projections.
        """
        rows = batch["labels"] != IGNORE_INDEX  # (B, T)
        stored = (
            self.cross_kv.inject(batch["cross_kv"])
            if batch["cross_kv"] is not None
            else contextlib.nullcontext()
        )
        with logits_at(self.head, rows), stored:
            logits = self.module(**batch["inputs"]).logits  # (N, V): labelled positions only
        return logits, batch["labels"][rows]


@dataclass(frozen=True)
class ObjectiveSetup:
    """What `Objective.prepare` may use, once per process before its first step."""

    config: TrainConfig
    backbone: Backbone  # processor and name; backbone.model is the student before adapters
    model: nn.Module  # the model being trained, unwrapped (a PeftModel, or Whisper for `full`)
    examples: Sequence[Example]  # the training examples, indexed like the sampler's batches
    device: torch.device
    encoder_cache: EncoderCache | None  # encoder outputs by utterance key, when the run caches them


class Objective(abc.ABC):
    """A training objective. Subclasses set `name` and implement `loss`; `prepare` is optional.

    `loss(model, batch)` runs under the trainer's autocast and its no_sync context: it must do the
    forward pass through `model.module` (or `model.labelled_logits`) and return summed terms; the
    trainer calls backward. `batch` holds `inputs` (the model's keyword arguments), `labels` (B, T)
    with -100 where nothing is learnt, `cross_kv` (stored K/V or None) and `languages` (B codes).
    """

    name: str = ""
    # The objective's options (TrainConfig.objective_options) and their defaults; none by default.
    option_defaults: dict = {}  # noqa: RUF012 - read-only, overridden per subclass

    @classmethod
    def resolve_options(cls, options: dict) -> dict:
        """The options with defaults filled in; ValueError naming an unknown key or a wrong type."""
        if not isinstance(options, dict):
            raise ValueError(f"objective_options: expected a mapping, got {options!r}")
        unknown = sorted(set(options) - set(cls.option_defaults))
        if unknown:
            valid = ", ".join(sorted(cls.option_defaults)) or "none"
            raise ValueError(
                f"objective_options.{unknown[0]}: not an option of {cls.name!r} (valid: {valid})"
            )
        out = dict(cls.option_defaults)
        for key, value in options.items():
            default = cls.option_defaults[key]
            if (
                isinstance(default, float)
                and isinstance(value, (int, float, str))
                and not isinstance(value, bool)
            ):
                try:
                    value = float(value)  # YAML 1.1 reads 1e-3 as a string
                except ValueError:
                    raise ValueError(f"objective_options.{key}: expected a number, got {value!r}") from None
            elif default is not None and not isinstance(value, type(default)):
                raise ValueError(f"objective_options.{key}: expected {type(default).__name__}, got {value!r}")
            out[key] = value
        return out

    def init_model(self, model: nn.Module, config: TrainConfig) -> None:  # noqa: B027 - optional hook
        """Set the trainable weights' starting values (a student from its teachers), once per run.

        Called on the freshly adapted model before a checkpoint is restored, so `--resume` still
        continues from the checkpoint's weights; the default keeps the adapter's own init.
        """

    def prepare(self, setup: ObjectiveSetup) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Build what the objective needs once (a teacher, its cached outputs)."""

    @abc.abstractmethod
    def loss(self, model: StepModel, batch: dict) -> LossParts:
        """This micro-batch's summed loss terms."""
