"""`dama data czech-fillets`: real recorded Czech speech from the game Fish Fillets NG (Debian, GPL-2).

`fillets-ng-data-cs` holds the Czech voice clips, `sound/<folder>/cs/<name>.ogg`; `fillets-ng-data` holds
the dialogue scripts, where `dialogId("<name>", "<font>", "<English>")` is followed by
`dialogStr("<Czech>")`. The game finds a clip as the sound folder of the script that defines its name:
a level's `script/<level>/[demo_|brief_]dialogs_cs.lua` speaks from `sound/<level>/`, and the shared
scripts say theirs in `dialogLoad("script/share/<prefix>", "sound/share/<folder>/")`. The font names
the speaker (small fish, big fish, ...), so it is recorded as the speaker.

    from dama_asr.data.czech_fillets import build_czech_fillets
    report = build_czech_fillets()          # -> $DAMA_HOME/corpora/czech-fillets/{train,dev,test}.jsonl
"""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dama_asr.accounting import SkippedItems
from dama_asr.data.audio import SAMPLE_RATE, AudioError, load_audio, write_wav_atomic
from dama_asr.data.debian import unpacked_package
from dama_asr.data.manifest import SPLITS, Utterance, write_manifest
from dama_asr.data.subset import split_items
from dama_asr.paths import dama_home

GAME_DIR = Path("usr/share/games/fillets-ng")
SOURCE = "fillets-ng-data-cs"
LICENCE = "GPL-2.0-or-later"

_STRING = r'"((?:[^"\\]|\\.)*)"'
_ANY = r'(?:"(?:[^"\\]|\\.)*"|nil)'  # a further argument (the English text), not captured
_DIALOG = re.compile(
    rf"dialogId\(\s*{_STRING}\s*,\s*(?:{_STRING}|nil)(?:\s*,\s*{_ANY})*\s*\)\s*(?:dialogStr\(\s*{_STRING}\s*\))?",
    re.S,
)
_SHARED_LOAD = re.compile(r'dialogLoad\(\s*"script/share/([\w-]*)"\s*,\s*"sound/(share/[\w/-]+?)/?"\s*\)')
_SILENT_PEAK = 1e-3  # below this the clip holds no audible speech


@dataclass(frozen=True)
class DialogLine:
    name: str  # the clip's file name without .ogg
    font: str  # who speaks it (font_small = small fish, font_big = big fish, ...)
    text: str  # Czech; may be empty (counting aloud, sound effects)
    script: str  # the script it came from, relative to the game folder


@dataclass
class FilletsReport:
    """What pairing and cleaning found: counts and the first few examples of every problem."""

    audio_files: int = 0
    dialog_lines: int = 0
    unmatched_audio: list[str] = field(default_factory=list)
    unmatched_text: list[str] = field(default_factory=list)
    skipped: SkippedItems = field(default_factory=lambda: SkippedItems(keep_examples=3))
    splits: dict[str, list[Utterance]] = field(default_factory=dict)

    def skip(self, reason: str, example: str) -> None:
        self.skipped.add(reason, example)

    def summary(self) -> str:
        kept = sum(len(v) for v in self.splits.values())
        lines = [
            f"audio clips: {self.audio_files}; Czech dialogue lines: {self.dialog_lines}; kept: {kept}",
            f"audio without text: {len(self.unmatched_audio)} {self.unmatched_audio[:5]}",
            f"text without audio: {len(self.unmatched_text)} {self.unmatched_text[:5]} (lines the game never voiced)",
        ]
        for reason, count in self.skipped.counts.most_common():
            lines.append(f"skipped, {reason}: {count}, e.g. {self.skipped.examples[reason]}")
        return "\n".join(lines)


def default_fillets_dir() -> Path:
    return dama_home() / "corpora" / "czech-fillets"


def _lua_unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": " ", "t": " "}.get(m.group(1), m.group(1)), text)


def parse_dialogs(text: str, script: str = "") -> list[DialogLine]:
    """Every `dialogId(...)` of a dialogue script with the `dialogStr(...)` that follows it."""
    return [
        DialogLine(
            name=m.group(1),
            font=m.group(2) or "",
            text=" ".join(_lua_unescape(m.group(3) or "").split()),
            script=script,
        )  # fmt: skip
        for m in _DIALOG.finditer(text)
    ]


def sound_folder_of(script: Path, shared_prefixes: dict[str, str]) -> str | None:
    """The sound folder (relative to `sound/`) a dialogue script speaks from, as the game resolves it."""
    parts = script.parts  # ('script', '<level>', '<prefix>dialogs_cs.lua')
    if len(parts) != 3 or parts[0] != "script":
        return None
    if parts[1] == "share":
        prefix = parts[2].removesuffix("dialogs_cs.lua")
        return shared_prefixes.get(prefix)
    return parts[1]


def read_dialogs(data_root: Path) -> dict[str, dict[str, DialogLine]]:
    """Czech dialogue lines per sound folder, keyed by clip name."""
    game = data_root / GAME_DIR
    shared: dict[str, str] = {}
    for lua in sorted((game / "script").rglob("*.lua")):
        for prefix, folder in _SHARED_LOAD.findall(lua.read_text(encoding="utf-8", errors="replace")):
            shared[prefix] = folder
    by_folder: dict[str, dict[str, DialogLine]] = {}
    for script in sorted((game / "script").rglob("*dialogs_cs.lua")):
        rel = script.relative_to(game)
        folder = sound_folder_of(rel, shared)
        if folder is None:
            continue
        lines = parse_dialogs(script.read_text(encoding="utf-8", errors="replace"), str(rel))
        for line in lines:
            # A name defined twice in one folder: the game keeps the last definition.
            by_folder.setdefault(folder, {})[line.name] = line
    return by_folder


def pair_clips(
    data_root: Path, voices_root: Path, report: FilletsReport
) -> list[tuple[Path, DialogLine, str]]:
    """(clip, its dialogue line, sound folder) for every Czech clip that has a line; the rest is reported."""
    dialogs = read_dialogs(data_root)
    report.dialog_lines = sum(len(v) for v in dialogs.values())
    sound = voices_root / GAME_DIR / "sound"
    clips = sorted(sound.rglob("cs/*.ogg"))
    report.audio_files = len(clips)
    pairs, voiced = [], set()
    for clip in clips:
        folder = str(clip.parent.parent.relative_to(sound))
        line = dialogs.get(folder, {}).get(clip.stem)
        if line is None:
            report.unmatched_audio.append(str(clip.relative_to(sound)))
            continue
        voiced.add((folder, clip.stem))
        pairs.append((clip, line, folder))
    report.unmatched_text = [
        f"{folder}/{name}" for folder, lines in sorted(dialogs.items()) for name, line in lines.items()
        if (folder, name) not in voiced and line.text
    ]  # fmt: skip
    return pairs


def _convert(clip: Path, target: Path) -> tuple[float, str | None]:
    """Decode, check and store one clip at 16 kHz; (duration, reason it is bad or None)."""
    if target.is_file():
        import soundfile as sf

        info = sf.info(str(target))
        return info.frames / info.samplerate, None
    try:
        samples = load_audio(clip)
    except AudioError as err:
        return 0.0, "longer than 30 s" if "longer than" in str(err) else "unreadable audio"
    if float(np.max(np.abs(samples))) < _SILENT_PEAK:
        return 0.0, "silent audio"
    write_wav_atomic(target, samples, SAMPLE_RATE)
    return len(samples) / SAMPLE_RATE, None


def build_czech_fillets(out: Path | None = None, seed: int = 0, data_root: Path | None = None,
                        voices_root: Path | None = None, workers: int = 2) -> FilletsReport:  # fmt: skip
    """Pair, clean, resample and split the Czech clips; write `out/{train,dev,test}.jsonl`.

    `data_root`/`voices_root` are unpacked `fillets-ng-data`/`fillets-ng-data-cs` trees; by default they
    are downloaded and unpacked into the cache.
    """
    out = Path(out) if out else default_fillets_dir()
    data_root = data_root or unpacked_package("fillets-ng-data")
    voices_root = voices_root or unpacked_package("fillets-ng-data-cs")
    report = FilletsReport()
    candidates, seen_audio = [], {}
    for clip, line, folder in pair_clips(data_root, voices_root, report):
        if not line.text:
            report.skip("empty transcript", f"{folder}/{clip.name}")
            continue
        digest = hashlib.sha1(clip.read_bytes()).hexdigest()
        if digest in seen_audio:  # the same recording shipped in two level folders
            report.skip("duplicate recording", f"{folder}/{clip.name} = {seen_audio[digest]}")
            continue
        seen_audio[digest] = f"{folder}/{clip.name}"
        clip_id = f"fillets-cs-{folder.replace('/', '-')}-{clip.stem}"
        candidates.append((clip_id, clip, line))
    targets = [out / "wav" / f"{clip_id}.wav" for clip_id, _, _ in candidates]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        converted = list(pool.map(_convert, [c for _, c, _ in candidates], targets))
    items = []
    for (clip_id, clip, line), target, (duration, reason) in zip(candidates, targets, converted, strict=True):
        if reason:
            report.skip(reason, str(clip.name))
            continue
        items.append(Utterance(id=clip_id, audio=str(target), text=line.text, language="cs", duration=round(duration, 3),
                               speaker=f"fillets-{line.font or 'unknown'}", source=SOURCE,
                               extra={"script": line.script, "licence": LICENCE}))  # fmt: skip
    # Each held-out split reaches its 10 % (overshoot): the corpus is small, a short test set is noisier.
    report.splits = split_items(items, by="sentence", dev=0.1, test=0.1, seed=seed, overshoot=True).splits
    for split in SPLITS:
        write_manifest(out / f"{split}.jsonl", report.splits[split])
    return report
