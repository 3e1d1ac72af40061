"""Per-utterance hypotheses of a study: the sidecar files `dama bench` writes next to its cells, and the
HTML view of them (the worst and a seeded sample of utterances, every system side by side, audio inline).

A sidecar is cells/<cell id>.utterances.jsonl (baseline__<corpus>.utterances.jsonl for the zero-shot
model): one JSON object per scored test utterance, in the test manifest's order,
  {"id", "language", "audio", "reference", "hypothesis", "wer", "cer", "suspicious", "suspicious_reasons"}
with `wer`/`cer` per utterance, Whisper-normalised, and `suspicious_reasons` (the runaway rules the
output broke) where the evaluation names them. An `audio` path under $DAMA_HOME is written as
"${DAMA_HOME}/...", so a committed sidecar finds the clips on any machine that has built the corpus.
Cells written before sidecars existed have none; the view says so rather than showing nothing.
"""

from __future__ import annotations

import base64
import html
import io
import json
import random
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from dama_asr.atomic import atomic_write_text
from dama_asr.data.audio import AudioError, load_audio
from dama_asr.paths import dama_home
from dama_asr.report.results import ResultsError, method_label

SUFFIX = ".utterances.jsonl"
HOME = "${DAMA_HOME}"
WORST, SAMPLE = 6, 4  # rows per corpus: the worst utterances, then a seeded random sample of the rest
# The page stays self-contained and mailable: at most this much audio in it, 16 kHz mono 16-bit FLAC.
MAX_CLIPS, MAX_AUDIO_BYTES = 20, 3 * 2**20

UTTERANCE_STYLE = """
.utts td, .utts th { text-align: left; vertical-align: top; max-width: 22em; }
.utts audio { width: 14em; display: block; margin-top: .3em; }
.wer { color: #777; font-size: .85em; white-space: nowrap; }
.scroll { overflow-x: auto; }
"""


def sidecar_path(cell_json: Path) -> Path:
    """cells/<id>.json -> cells/<id>.utterances.jsonl (a cell id holds dots: '0.5h')."""
    return cell_json.with_name(cell_json.name.removesuffix(".json") + SUFFIX)


def _portable(audio: str) -> str:
    home = str(dama_home())
    return HOME + audio[len(home) :] if audio.startswith(home + "/") else audio


def resolve_audio(audio: str) -> Path:
    return Path(str(dama_home()) + audio[len(HOME) :] if audio.startswith(HOME) else audio)


def write_sidecar(path: Path, scored: list[dict], audio_of: dict[str, str]) -> Path:
    """One line per scored utterance (evaluate's "utterances"), with its clip's path from `audio_of`."""
    lines = []
    for u in scored:
        row = {"id": u["id"], "language": u["language"], "audio": _portable(audio_of[u["id"]])}
        row.update({k: u[k] for k in ("reference", "hypothesis", "wer", "cer", "suspicious")})
        if "suspicious_reasons" in u:
            row["suspicious_reasons"] = list(u["suspicious_reasons"])
        lines.append(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
    atomic_write_text(path, "".join(lines))
    return path


def read_sidecar(path: Path) -> list[dict]:
    rows = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ResultsError(
                f"{path}:{line_no}: not valid JSON ({err.msg}); delete it to rerun that cell"
            ) from err
    return rows


@dataclass(frozen=True)
class System:
    """One column of the view: a model's hypotheses on a corpus' test set, by utterance id."""

    label: str
    rows: dict[str, dict]


@dataclass
class CorpusView:
    corpus: str
    zero_shot: System | None
    methods: list[System]


def _views(cells_dir: Path) -> tuple[dict[str, CorpusView], int, int]:
    """Per corpus, the zero-shot column and one column per method: the method's cell with the most hours
    (lowest seed among those), of the cells that have a sidecar. Also (cells with a sidecar, cells)."""
    chosen: dict[tuple[str, str], tuple[tuple, Path, dict]] = {}
    baselines: dict[str, Path] = {}
    cells = with_sidecar = 0
    for path in sorted(cells_dir.glob("*.json")):
        side = sidecar_path(path)
        if path.name.startswith("baseline__"):
            if side.is_file():
                baselines[path.stem.removeprefix("baseline__")] = side
            continue
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ResultsError(f"{path}: not valid JSON ({err.msg}); delete it to rerun that cell") from err
        if "cell" not in data or "test" not in data:
            continue
        cells += 1
        if not side.is_file():
            continue
        with_sidecar += 1
        c = data["cell"]
        key, rank = (c.get("corpus", ""), method_label(c)), (-float(c["hours"]), int(c["seed"]))
        if key not in chosen or rank < chosen[key][0]:
            chosen[key] = (rank, side, c)
    views: dict[str, CorpusView] = {}
    for (corpus, method), (_, side, c) in sorted(chosen.items()):
        view = views.setdefault(corpus, CorpusView(corpus, None, []))
        label = f"{method} {float(c['hours']):g} h seed {c['seed']}"
        view.methods.append(System(label, {r["id"]: r for r in read_sidecar(side)}))
    for corpus, side in baselines.items():
        if corpus in views:  # baseline__english is the forgetting check, not a study corpus
            views[corpus].zero_shot = System("zero-shot", {r["id"]: r for r in read_sidecar(side)})
    return views, with_sidecar, cells


def pick(view: CorpusView, worst: int = WORST, sample: int = SAMPLE, seed: int = 0) -> tuple[list, list]:
    """(worst ids, sampled ids): worst by mean WER over the methods' columns, where adaptation still
    fails (not the zero-shot model's, which adaptation exists to fix); the sample is drawn from the rest
    and kept in test order."""
    systems = view.methods
    order: dict[str, dict] = {}
    for system in [*systems, view.zero_shot]:
        for uid, row in (system.rows if system else {}).items():
            order.setdefault(uid, row)
    score = {
        uid: statistics.fmean([s.rows[uid]["wer"] for s in systems if uid in s.rows] or [0.0])
        for uid in order
    }
    ranked = sorted(order, key=lambda uid: (-score[uid], uid))
    worst_ids = ranked[:worst]
    rest = [uid for uid in order if uid not in worst_ids]
    chosen = set(random.Random(seed).sample(rest, min(sample, len(rest))))
    return worst_ids, [uid for uid in rest if uid in chosen]


_EMBEDDED_CLIP = re.compile(
    r"<tr><td>(?P<uid>[^<]*?) \([^<()]*\)<audio controls preload='metadata' "
    r"src='data:audio/flac;base64,(?P<b64>[A-Za-z0-9+/=]+)'></audio>"
)


def embedded_clips(page: str) -> dict[str, bytes]:
    """The FLAC clips a previously written page embeds, by (HTML-escaped) utterance id: a page rebuilt on a
    machine without the corpus keeps them instead of losing its audio (the committed study reports)."""
    return {m["uid"]: base64.b64decode(m["b64"]) for m in _EMBEDDED_CLIP.finditer(page)}


class _AudioBudget:
    """Embeds clips until MAX_CLIPS or MAX_AUDIO_BYTES is reached, then says why a clip is left out. Where
    an utterance's audio cannot be read, the clip the previous page embedded for it is kept."""

    def __init__(
        self, clips: int = MAX_CLIPS, size: int = MAX_AUDIO_BYTES, previous: dict[str, bytes] | None = None
    ):
        self.clips, self.size, self.previous = clips, size, previous or {}

    def tag(self, audio: str, uid: str = "") -> str:
        if self.clips <= 0:
            return "<span class='wer'>audio left out (page cap reached)</span>"
        try:
            samples = load_audio(resolve_audio(audio), max_seconds=None)  # (T,) 16 kHz mono float32
        except AudioError as err:
            data = self.previous.get(html.escape(uid))
            if data is None:
                return f"<span class='wer'>no audio: {html.escape(str(err))}</span>"
        else:
            buffer = io.BytesIO()
            pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
            sf.write(buffer, pcm, 16_000, format="FLAC", subtype="PCM_16")
            data = buffer.getvalue()
        if len(data) > self.size:
            return "<span class='wer'>audio left out (page cap reached)</span>"
        self.clips, self.size = self.clips - 1, self.size - len(data)
        return f"<audio controls preload='metadata' src='data:audio/flac;base64,{base64.b64encode(data).decode()}'></audio>"


def _hypothesis(system: System | None, uid: str) -> str:
    row = system.rows.get(uid) if system else None
    if row is None:
        return "<td>–</td>"
    reasons = ", ".join(row.get("suspicious_reasons") or [])
    flag = (
        (f", suspicious: {html.escape(reasons)}" if reasons else ", suspicious")
        if row.get("suspicious")
        else ""
    )
    return f"<td>{html.escape(row['hypothesis'])}<br><span class='wer'>WER {row['wer']:.0%}{flag}</span></td>"


def _table(view: CorpusView, ids: list[str], budget: _AudioBudget) -> str:
    systems = [view.zero_shot, *view.methods]
    head = "".join(f"<th>{html.escape(s.label if s else 'zero-shot')}</th>" for s in systems)
    rows = []
    for uid in ids:
        row = next(s.rows[uid] for s in systems if s and uid in s.rows)
        first = f"{html.escape(uid)} ({html.escape(row['language'])}){budget.tag(row['audio'], uid)}"
        cells = "".join(_hypothesis(s, uid) for s in systems)
        rows.append(f"<tr><td>{first}</td><td>{html.escape(row['reference'])}</td>{cells}</tr>")
    return (
        f"<div class='scroll'><table class='utts'><tr><th>utterance</th><th>reference</th>{head}</tr>"
        + "".join(rows)
        + "</table></div>"
    )


def utterance_section(folder: str | Path, seed: int = 0, previous_page: str = "") -> str:
    """The page's "Utterances" section, from the sidecars under folder/cells (or folder); previous_page,
    the page this one replaces, lends its clips for audio that cannot be read here."""
    folder = Path(folder)
    cells_dir = folder / "cells" if (folder / "cells").is_dir() else folder
    views, with_sidecar, cells = _views(cells_dir)
    out = ["<h2>Utterances</h2>"]
    if not views:
        return out[0] + (
            f"<p class='note'>No per-utterance hypotheses recorded: none of the {cells} cell(s) has a "
            f"<code>cells/&lt;cell id&gt;{SUFFIX}</code> file (cells written before <code>dama bench</code> stored them). "
            "Delete a cell's JSON and rerun it to record them.</p>"
        )
    missing = (
        f" {cells - with_sidecar} cell(s) predate them and are not shown." if with_sidecar < cells else ""
    )
    out.append(
        "<p class='note'>Per corpus, the utterances with the highest mean WER over the methods' columns, then "
        f"a random sample (seed {seed}) of the rest. Each method's column is its cell with the most training "
        f"hours; WER per utterance is Whisper-normalised. At most {MAX_CLIPS} clips "
        f"({MAX_AUDIO_BYTES / 2**20:.0f} MiB) are embedded, 16 kHz mono 16-bit FLAC.{missing}</p>"
    )
    budget = _AudioBudget(previous=embedded_clips(previous_page))
    for corpus, view in views.items():
        worst, sample = pick(view, seed=seed)
        if view.zero_shot is None:
            out.append(f"<p class='note'>{html.escape(corpus)}: no zero-shot hypotheses recorded.</p>")
        out.append(f"<h3>{html.escape(corpus)}: worst utterances</h3>{_table(view, worst, budget)}")
        if sample:
            out.append(f"<h3>{html.escape(corpus)}: random sample</h3>{_table(view, sample, budget)}")
    return "\n".join(out)
