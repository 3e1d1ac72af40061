"""Build a transformers WhisperTokenizer from the CTranslate2 package's `tokenizer.json`.

The shipped tokenizer.json has two defects that matter for training (decoding is unaffected):
- its first BPE merge ("Ġ t") is missing, so every word starting with " t" encodes to the wrong ids
  (" the" must be 264); Whisper's multilingual tokenizer has exactly 50,000 merges;
- the 1,501 timestamp tokens (<|0.00|> .. <|30.00|>, ids 50364..51864) are not listed.
"""

from __future__ import annotations

from transformers import AddedToken, WhisperTokenizer

MISSING_FIRST_MERGE = "Ġ t"
EXPECTED_MERGES = 50_000
TIMESTAMP_BEGIN = 50364
N_TIMESTAMPS = 1501


def fixed_merges(merges: list) -> list[str]:
    """Restore the first merge if it is missing; reject anything else that is not 50,000 merges."""
    merges = [" ".join(m) if isinstance(m, list) else m for m in merges]
    if len(merges) == EXPECTED_MERGES - 1 and merges[0] != MISSING_FIRST_MERGE:
        merges = [MISSING_FIRST_MERGE, *merges]
    if len(merges) != EXPECTED_MERGES:
        raise ValueError(
            f"expected {EXPECTED_MERGES} BPE merges in a multilingual Whisper tokenizer, got {len(merges)}"
        )
    return merges


def build_whisper_tokenizer(tokenizer_json: dict) -> WhisperTokenizer:
    model = tokenizer_json["model"]
    specials = sorted(tokenizer_json["added_tokens"], key=lambda t: t["id"])
    vocab = dict(model["vocab"])
    # transformers lists special tokens in id order and takes "last special id + 1" as the first
    # timestamp, so every <|...|> control token must be registered as special, in order.
    special_tokens = [AddedToken(t["content"], special=True, normalized=False) for t in specials]
    tokenizer = WhisperTokenizer(
        vocab=vocab,
        merges=[tuple(m.split(" ")) for m in fixed_merges(model["merges"])],
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=448,
    )
    tokenizer.add_special_tokens(
        {"additional_special_tokens": special_tokens}, replace_extra_special_tokens=True
    )
    timestamps = [
        AddedToken(f"<|{i * 0.02:.2f}|>", special=False, normalized=False) for i in range(N_TIMESTAMPS)
    ]
    tokenizer.add_tokens(timestamps)
    for t in specials:
        got = tokenizer.convert_tokens_to_ids(t["content"])
        if got != t["id"]:
            raise ValueError(f"special token {t['content']} got id {got}, expected {t['id']}")
    if tokenizer.convert_tokens_to_ids("<|0.00|>") != TIMESTAMP_BEGIN:
        raise ValueError("timestamp tokens are not at their Whisper ids")
    return tokenizer
