"""Labels, validation of training data, length-grouped batches."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from dama_asr.data.manifest import Utterance, read_manifest
from dama_asr.languages import UnknownLanguageError
from dama_asr.testing import real_tokenizer, write_tone
from dama_asr.train import TrainDataError
from dama_asr.train.data import IGNORE_INDEX, collate_tokens, epoch_batches, prepare_examples, shard_batch

LANGS = {"cy", "lt", "en"}


@pytest.fixture(scope="module")
def tokenizer():
    return real_tokenizer()


def _item(tmp_path: Path, text: str, language: str = "cy", uid: str = "u0", audio: bool = True) -> Utterance:
    path = write_tone(tmp_path / f"{uid}.wav") if audio else tmp_path / "missing.wav"
    return Utterance(id=uid, audio=str(path), text=text, language=language)


def test_labels_force_language_and_task_and_end_with_eot(tokenizer, tmp_path: Path) -> None:
    items = [_item(tmp_path, "bore da", uid="a"), _item(tmp_path, "diolch yn fawr iawn", "lt", uid="b")]
    examples, skipped = prepare_examples(items, tokenizer, LANGS, 448)
    assert skipped.total == 0
    ids = tokenizer.convert_tokens_to_ids
    prompt = ids(["<|startoftranscript|>", "<|cy|>", "<|transcribe|>", "<|notimestamps|>"])
    assert list(examples[0].tokens[:4]) == prompt
    assert examples[1].tokens[1] == ids("<|lt|>")
    assert examples[0].tokens[-1] == ids("<|endoftext|>")
    # The transcript starts with a space, as Whisper writes it.
    assert tokenizer.decode(examples[0].tokens[4:-1]) == " bore da"

    batch = collate_tokens(examples, pad_id=ids("<|endoftext|>"), prompt_loss=False)
    inputs, labels = batch["decoder_input_ids"], batch["labels"]
    short, long = examples
    assert inputs.shape == labels.shape == (2, long.length)
    # Inputs start with <|sot|>; labels are the inputs shifted left by one and end with <|eot|>.
    assert inputs[0, :4].tolist() == prompt
    assert labels[1, 3 : long.length].tolist() == list(long.tokens[4:])
    assert labels[0, short.length - 1] == ids("<|endoftext|>")
    # The forced prompt and the padding are ignored by the loss.
    assert (labels[:, :3] == IGNORE_INDEX).all()
    assert (labels[0, short.length :] == IGNORE_INDEX).all()
    assert (inputs[0, short.length :] == ids("<|endoftext|>")).all()
    with_prompt = collate_tokens(examples, pad_id=ids("<|endoftext|>"), prompt_loss=True)["labels"]
    assert with_prompt[0, :3].tolist() == prompt[1:]


def test_over_long_transcript_is_refused_naming_the_item(tokenizer, tmp_path: Path) -> None:
    items = [_item(tmp_path, "bore da"), _item(tmp_path, " ".join(["gair"] * 500), uid="long-one")]
    with pytest.raises(TrainDataError, match="long-one.*448"):
        prepare_examples(items, tokenizer, LANGS, 448)


def test_unknown_language_is_refused_before_any_audio_work(tokenizer, tmp_path: Path) -> None:
    items = [_item(tmp_path, "bore da"), _item(tmp_path, "kia ora", "xx", uid="maori", audio=False)]
    with pytest.raises(UnknownLanguageError, match="maori"):
        prepare_examples(items, tokenizer, LANGS, 448)
    with pytest.raises(UnknownLanguageError, match="haw"):
        prepare_examples([_item(tmp_path, "aloha", "haw")], tokenizer, LANGS, 448)


def test_bad_items_are_skipped_and_counted_and_empty_set_is_an_error(tokenizer, tmp_path: Path) -> None:
    good = _item(tmp_path, "bore da", uid="good")
    empty = _item(tmp_path, "   ", uid="empty")
    missing = _item(tmp_path, "nos da", uid="missing", audio=False)
    examples, skipped = prepare_examples([good, empty, missing], tokenizer, LANGS, 448)
    assert [e.item.id for e in examples] == ["good"]
    assert dict(skipped.counts) == {"empty transcript": 1, "unreadable audio": 1}
    with pytest.raises(TrainDataError, match="empty"):
        prepare_examples([empty, missing], tokenizer, LANGS, 448)
    with pytest.raises(TrainDataError, match="empty"):
        prepare_examples([], tokenizer, LANGS, 448)


def test_length_grouped_batches_are_deterministic_and_grouped() -> None:
    lengths = [(i * 37) % 101 for i in range(200)]
    a = epoch_batches(lengths, 8, seed=1, epoch=0, mega_batch_factor=5)
    assert a == epoch_batches(lengths, 8, seed=1, epoch=0, mega_batch_factor=5)
    assert a != epoch_batches(lengths, 8, seed=1, epoch=1, mega_batch_factor=5)
    assert a != epoch_batches(lengths, 8, seed=2, epoch=0, mega_batch_factor=5)
    assert sorted(i for b in a for i in b) == list(range(200))

    # Grouping by length leaves far less padding than random batches.
    def padding(batches: list[list[int]]) -> int:
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    plain = epoch_batches(lengths, 8, seed=1, epoch=0, length_grouped=False)
    assert padding(a) < padding(plain) / 3


def test_shard_batch_splits_a_global_batch_between_processes() -> None:
    batch = list(range(7))
    parts = [shard_batch(batch, rank, 2) for rank in range(2)]
    assert parts == [[0, 1, 2, 3], [4, 5, 6]]
    assert shard_batch(batch, 0, 1) == batch


def test_tiny_manifest_fixture_reads(tiny_train: Path) -> None:
    assert len(read_manifest(tiny_train)) == 8


def test_a_language_the_model_lacks_names_the_item_the_model_and_the_nearest_code(
    tokenizer, tmp_path: Path
) -> None:
    from dama_asr.languages import size_languages

    base = set(size_languages("whisper-base"))
    # The bad items come last, after items whose audio would be read: the whole manifest is checked first.
    items = [
        _item(tmp_path, "bore da", uid="first"),
        _item(tmp_path, "早晨", "yue", uid="hk-1", audio=False),
        _item(tmp_path, "唔該", "yue", uid="hk-2", audio=False),
    ]
    with pytest.raises(UnknownLanguageError) as caught:
        prepare_examples(items, tokenizer, base, 448, model_name="whisper-base")
    message = str(caught.value)
    assert message.startswith("item 'hk-1' (and 1 more item(s)): language 'yue' is not one of whisper-base's")
    assert "only whisper-large-v3 has it" in message and "label it 'zh'" in message
    # Without a name, the model is named after the tokenizer's folder, never left out.
    with pytest.raises(UnknownLanguageError, match="not one of the model's 3 languages"):
        prepare_examples(items, tokenizer, LANGS, 448)
    relabelled = [items[0], *(replace(u, language="zh") for u in items[1:])]
    examples, _ = prepare_examples(relabelled, tokenizer, base, 448, check_audio=False)
    assert [e.item.id for e in examples] == ["first", "hk-1", "hk-2"]
