"""Training examples: validated utterances, Whisper labels, length-grouped batches, collation.

Labels follow Whisper's training format. For a transcript with tokens t1..tn in language xx:

    sequence          <|sot|> <|xx|> <|transcribe|> <|notimestamps|> t1 ... tn <|eot|>
    decoder_input_ids <|sot|> <|xx|> <|transcribe|> <|notimestamps|> t1 ... tn
    labels            <|xx|>  <|transcribe|> <|notimestamps|> t1 ... tn <|eot|>

We pass decoder_input_ids explicitly, so transformers never shifts the labels itself (it would
prepend decoder_start_token_id to labels that already start with the prompt). The forced prompt
positions are -100 in the labels unless `prompt_loss` is set; padding is <|eot|> in the inputs and
-100 in the labels.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from dama_asr.accounting import SkippedItems
from dama_asr.data.audio import AudioError, load_audio
from dama_asr.data.manifest import Utterance
from dama_asr.errors import DamaError
from dama_asr.languages import (
    UnknownLanguageError,
    language_token,
    normalise_language,
    unsupported_language_message,
)

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
PROMPT_LENGTH = 4  # <|sot|> <|xx|> <|transcribe|> <|notimestamps|>


class TrainDataError(DamaError, ValueError):
    """Training data that cannot be used; the message names the item or the manifest."""


@dataclass(frozen=True)
class Example:
    """One usable training utterance: the manifest item and its full token sequence (sot ... eot).

    `language` is Whisper's code for item.language ('Welsh' -> 'cy'), worked out from it when not given.
    """

    item: Utterance
    tokens: tuple[int, ...]
    language: str = ""

    def __post_init__(self) -> None:
        if not self.language:
            object.__setattr__(self, "language", normalise_language(self.item.language))

    @property
    def length(self) -> int:
        return len(self.tokens) - 1


def prompt_tokens(tokenizer, language: str, task: str = "transcribe") -> list[int]:
    names = ["<|startoftranscript|>", language_token(language), f"<|{task}|>", "<|notimestamps|>"]
    ids = tokenizer.convert_tokens_to_ids(names)
    if tokenizer.unk_token_id in ids:
        raise UnknownLanguageError(
            f"the tokenizer has no token for {names[ids.index(tokenizer.unk_token_id)]}"
        )
    return ids


def token_sequence(tokenizer, language: str, text: str) -> list[int]:
    """<|sot|><|xx|><|transcribe|><|notimestamps|> + text + <|eot|>.

    The text gets a leading space, as in Whisper's own outputs (' Mr. Quilter ...').
    """
    body = tokenizer.encode(" " + text.strip(), add_special_tokens=False)
    return [*prompt_tokens(tokenizer, language), *body, tokenizer.convert_tokens_to_ids("<|endoftext|>")]


def model_item_languages(items: Sequence[Utterance], known_languages: set[str], model_name: str) -> list[str]:
    """Each item's code, checked against the model's codes for the whole manifest before any other work.

    An unknown code, or one the model has no token for (`yue` on whisper-base), is an error naming
    the first such item, the model, and how many more items share the problem.
    """
    codes, bad = [], []
    for item in items:
        try:
            code = normalise_language(item.language)
        except UnknownLanguageError as err:
            raise UnknownLanguageError(f"item {item.id!r}: {err}") from None
        if code not in known_languages:
            bad.append((item, code))
        codes.append(code)
    if bad:
        item, code = bad[0]
        more = f" (and {len(bad) - 1} more item(s))" if len(bad) > 1 else ""
        raise UnknownLanguageError(
            f"item {item.id!r}{more}: {unsupported_language_message(code, known_languages, model_name)}"
        )
    return codes


def prepare_examples(
    items: Sequence[Utterance],
    tokenizer,
    known_languages: set[str],
    max_target_positions: int,
    check_audio: bool = True,
    model_name: str = "",
) -> tuple[list[Example], SkippedItems]:
    """Validate and tokenise a training manifest, before any model work.

    Unknown languages and over-long transcripts are errors naming the item; empty transcripts and
    unreadable audio are skipped and counted. An empty result is an error. `model_name` names the
    model in language errors (default: the tokenizer's folder name).
    """
    model_name = model_name or Path(tokenizer.name_or_path or "").name or "the model"
    languages = model_item_languages(items, known_languages, model_name)
    skipped = SkippedItems()
    examples = []
    for item, language in zip(items, languages, strict=True):
        if not item.text.strip():
            skipped.add("empty transcript", item.id)
            continue
        tokens = token_sequence(tokenizer, language, item.text)
        if len(tokens) - 1 > max_target_positions:
            raise TrainDataError(
                f"item {item.id!r}: transcript is {len(tokens) - 1} decoder tokens, more than the model's "
                f"{max_target_positions}; split the utterance or drop it from the manifest"
            )
        if check_audio:
            try:
                load_audio(item.audio)
            except AudioError as err:
                skipped.add("unreadable audio", str(err))
                continue
        examples.append(Example(item=item, tokens=tuple(tokens), language=language))
    if not examples:
        raise TrainDataError(
            f"the training set is empty: {len(items)} item(s), skipped {skipped.to_dict()['counts']}"
        )
    if skipped.total:
        log.warning("skipped %d training item(s): %s", skipped.total, dict(skipped.counts))
    return examples, skipped


def grouped_batches(
    indices: Sequence[int],
    lengths: Sequence[int],
    batch_size: int,
    rng: random.Random,
    length_grouped: bool,
    mega_batch_factor: int,
) -> list[list[int]]:
    """Shuffle `indices` with `rng` and cut them into batches (see `epoch_batches` for the grouping);
    the samplers call it on a subset of the examples (one language, say)."""
    order = list(indices)
    rng.shuffle(order)
    if length_grouped:
        mega = batch_size * mega_batch_factor
        order = [
            i
            for start in range(0, len(order), mega)
            for i in sorted(order[start : start + mega], key=lambda i: -lengths[i])
        ]
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if length_grouped:
        rng.shuffle(batches)
    return batches


def epoch_batches(
    lengths: Sequence[int],
    batch_size: int,
    seed: int,
    epoch: int,
    length_grouped: bool = True,
    mega_batch_factor: int = 50,
) -> list[list[int]]:
    """The epoch's batches of example indices; a pure function of (lengths, batch_size, seed, epoch).

    Length grouping: shuffle, cut into mega-batches of `mega_batch_factor` batches, sort each by
    length (longest first), cut into batches, then shuffle the batch order. Every process computes
    the same list, so resuming and multi-process training need no shared state.
    """
    rng = random.Random(f"{seed}:{epoch}")
    return grouped_batches(range(len(lengths)), lengths, batch_size, rng, length_grouped, mega_batch_factor)


def shard_batch(batch: list[int], rank: int, world_size: int) -> list[int]:
    """This process's contiguous part of a global batch (sizes differ by at most one)."""
    per, extra = divmod(len(batch), world_size)
    start = rank * per + min(rank, extra)
    return batch[start : start + per + (rank < extra)]


def collate_tokens(examples: Sequence[Example], pad_id: int, prompt_loss: bool) -> dict:
    """decoder_input_ids (B, T) padded with `pad_id`; labels (B, T) padded with -100; languages (B codes)."""
    width = max(e.length for e in examples)
    inputs = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    for row, example in enumerate(examples):
        seq = torch.tensor(example.tokens, dtype=torch.long)
        inputs[row, : example.length] = seq[:-1]
        labels[row, : example.length] = seq[1:]
        if not prompt_loss:
            labels[row, : PROMPT_LENGTH - 1] = IGNORE_INDEX
    return {"decoder_input_ids": inputs, "labels": labels, "languages": [e.language for e in examples]}
