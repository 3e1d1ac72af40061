"""A character-level CTC probe of the encoder: how well each layer's frames spell the transcript.

The language-ID probe pools a layer over time, which suits the decoder but hides what an acoustic encoder
holds frame by frame. Here every encoder layer's frames (pairs averaged: 40 ms, enough for the ~15
characters per second of speech) feed one linear layer trained with CTC to emit the transcript's
characters; the held-out character error rate per layer says where the encoder's representation
becomes readable as text in this language. A curve that keeps falling to the top says the upper layers
carry what adaptation needs and the bottom is generic (adapt the top, cache the bottom:
`--encoder-from K`); a curve that flattens early says the opposite.

A held-out split (by utterance, seeded), not k-fold: each layer's probe trains for many epochs, and one
split of a few hundred utterances already separates layers by more than its noise.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dama_asr.backbone.loading import Backbone
from dama_asr.data.audio import AudioError, load_audio
from dama_asr.data.manifest import Utterance
from dama_asr.features.log_mel import log_mel
from dama_asr.probe.curve import ProbeError
from dama_asr.probe.features import encoder_frames

BLANK = 0


@dataclass(frozen=True)
class CharProbeOptions:
    """heldout: share of utterances scored (never trained on).  epochs/lr/batch_size: each layer's
    linear CTC head (Adam).  pool: encoder frames averaged per probe frame.  max_utterances: a seeded
    sample (0 = all)."""

    heldout: float = 0.2
    epochs: int = 40
    lr: float = 3e-3
    batch_size: int = 16
    pool: int = 2
    max_utterances: int = 0
    seed: int = 0
    forward_batch: int = 8

    def __post_init__(self) -> None:
        if not 0 < self.heldout < 1:
            raise ProbeError(f"heldout: a share in (0, 1), got {self.heldout}")
        if self.epochs < 1 or self.batch_size < 1 or self.pool < 1 or self.forward_batch < 1:
            raise ProbeError("epochs, batch_size, pool and forward_batch: must be >= 1")


def normalise_text(text: str) -> str:
    """What the probe spells: NFC, lower case, whitespace collapsed (one space is a character too)."""
    return " ".join(unicodedata.normalize("NFC", text).lower().split())


def encoder_layer_frames(backbone: Backbone, audios: Sequence[np.ndarray], options: CharProbeOptions):
    """Per utterance, every encoder layer's frames that hold audio, pooled: (L+1, T_i, D) float16."""
    model, processor = backbone.model, backbone.processor
    dtype = next(model.parameters()).dtype
    out = []
    starts = range(0, len(audios), options.forward_batch)
    for start in tqdm(starts, desc="encoder frames", unit="batch", leave=False):
        batch = audios[start : start + options.forward_batch]
        features = log_mel(processor.feature_extractor, list(batch)).to(backbone.device, dtype=dtype)
        with torch.no_grad(), backbone.autocast():
            hidden = model.model.encoder(features, output_hidden_states=True).hidden_states
        stacked = torch.stack([h.float() for h in hidden], dim=1)  # (B, L+1, 1500, D)
        for row, audio in enumerate(batch):
            valid = encoder_frames(len(audio), stacked.shape[2])
            frames = stacked[row, :, :valid]
            usable = valid // options.pool * options.pool or valid
            pooled = frames[:, :usable].reshape(
                frames.shape[0], -1, min(options.pool, usable), frames.shape[-1]
            )
            out.append(pooled.mean(dim=2).to(torch.float16).cpu())
    return out


def _greedy(log_probs: torch.Tensor, length: int) -> list[int]:
    ids = log_probs[:length].argmax(dim=-1).tolist()
    return [i for k, i in enumerate(ids) if i != BLANK and (k == 0 or i != ids[k - 1])]


def _train_head(frames, targets, vocab: int, options: CharProbeOptions, seed: int) -> torch.nn.Linear:
    torch.manual_seed(seed)
    head = torch.nn.Linear(frames[0].shape[-1], vocab)
    opt = torch.optim.Adam(head.parameters(), lr=options.lr)
    ctc = torch.nn.CTCLoss(blank=BLANK, zero_infinity=True)
    order = list(range(len(frames)))
    rng = random.Random(seed)
    for _ in range(options.epochs):
        rng.shuffle(order)
        for start in range(0, len(order), options.batch_size):
            idx = order[start : start + options.batch_size]
            x = torch.nn.utils.rnn.pad_sequence([frames[i].float() for i in idx])  # (T, B, D)
            log_probs = head(x).log_softmax(-1)
            lengths = torch.tensor([len(frames[i]) for i in idx])
            labels = torch.cat([torch.tensor(targets[i]) for i in idx])
            label_lengths = torch.tensor([len(targets[i]) for i in idx])
            loss = ctc(log_probs, labels, lengths, label_lengths)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head


def _cer(head: torch.nn.Linear, frames, texts: list[str], alphabet: list[str]) -> float:
    import jiwer

    hyps = []
    with torch.no_grad():
        for x in frames:
            ids = _greedy(head(x.float()).log_softmax(-1), len(x))
            hyps.append("".join(alphabet[i] for i in ids))
    return float(jiwer.cer(texts, hyps))


def run_char_probe(backbone: Backbone, items: Sequence[Utterance], options: CharProbeOptions) -> dict:
    """Held-out CER per encoder layer (0 = the convolutional front end's output)."""
    items = [u for u in items if normalise_text(u.text)]
    rng = random.Random(options.seed)
    if options.max_utterances and len(items) > options.max_utterances:
        items = rng.sample(list(items), options.max_utterances)
    audios, texts, skipped = [], [], 0
    for u in items:
        try:
            audios.append(load_audio(u.audio))
            texts.append(normalise_text(u.text))
        except AudioError:
            skipped += 1
    if len(texts) < 5:
        raise ProbeError(
            f"the character probe needs at least 5 readable utterances with text, got {len(texts)}"
        )
    alphabet = ["<blank>", *sorted({c for t in texts for c in t})]
    index = {c: i for i, c in enumerate(alphabet)}
    frames = encoder_layer_frames(backbone, audios, options)
    order = list(range(len(texts)))
    random.Random(options.seed).shuffle(order)
    n_held = max(1, round(options.heldout * len(order)))
    held, train = order[:n_held], order[n_held:]
    # CTC needs at least as many frames as labels (plus one per repeated pair); clips too short to spell
    # their transcript at this frame rate are left out of training, not of scoring.
    targets = [[index[c] for c in t] for t in texts]
    trainable = [i for i in train if len(frames[i][0]) >= len(targets[i])]
    layers = []
    for layer in tqdm(range(frames[0].shape[0]), desc="char probe", unit="layer"):
        head = _train_head([frames[i][layer] for i in trainable], [targets[i] for i in trainable],
                           len(alphabet), options, options.seed + layer)  # fmt: skip
        layers.append(
            {
                "layer": layer,
                "cer": _cer(head, [frames[i][layer] for i in held], [texts[i] for i in held], alphabet),
            }
        )
    best = min(layers, key=lambda r: r["cer"])
    return {"task": "chars", "model": backbone.name, "options": asdict(options), "layers": layers,
            "best_layer": best["layer"], "alphabet_size": len(alphabet) - 1, "train_utterances": len(trainable),
            "heldout_utterances": len(held), "skipped_audio": skipped,
            "languages": sorted({u.language for u in items})}  # fmt: skip


def plot_char_probe(result: dict, path) -> Path:
    """Held-out CER against encoder layer (0 = the front end)."""
    from pathlib import Path

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    figure = Figure(figsize=(7, 4), dpi=120)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    layers = [r["layer"] for r in result["layers"]]
    ax.plot(layers, [r["cer"] for r in result["layers"]], "o-", color="tab:orange")
    ax.set_xlabel("encoder layer (0 = convolutional front end)")
    ax.set_ylabel("held-out CER of a linear CTC probe")
    ax.set_title(
        f"{result['model']}: {', '.join(result['languages'])}, {result['heldout_utterances']} held-out utterances"
    )
    ax.set_xticks(layers)
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, bbox_inches="tight")
    return path
