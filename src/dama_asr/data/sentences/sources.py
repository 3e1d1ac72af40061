"""Where sentences come from: translation catalogues inside Debian packages, read without installing.

Each source turns an unpacked package into raw strings for one language (and the English originals of
the same catalogue, used to drop untranslated entries). Adding a source = one function + one entry in
`SOURCES`.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dama_asr.data.debian import unpacked_package
from dama_asr.data.sentences.catalogues import parse_ftl, parse_mallard, parse_properties, parse_qm

# Firefox's locale codes where they differ from Whisper's; English comes from the en-GB language pack
# (the en-US strings live in the 70 MB browser package, en-GB differs from them only in spelling).
FIREFOX_LOCALES = {"en": "en-gb", "gu": "gu-in", "pa": "pa-in", "hy": "hy-am", "ne": "ne-np", "hi": "hi-in"}
GNOME_LOCALES = {"en": "C"}
GCOMPRIS_LOCALES = {"en": None}  # English is the source text of every catalogue


@dataclass(frozen=True)
class Source:
    """A Debian package and how to read one language's strings out of it."""

    name: str
    licence: str
    package: Callable[[str], str]  # language -> Debian package name
    read: Callable[[Path, str], Iterator[str]]  # (unpacked root, language) -> raw strings
    has_language: Callable[[str], bool] = lambda language: True


def _firefox_package(language: str) -> str:
    return f"firefox-esr-l10n-{FIREFOX_LOCALES.get(language, language)}"


def _read_firefox(root: Path, language: str) -> Iterator[str]:
    # A language pack is one .xpi (zip) holding Fluent (.ftl) and legacy .properties catalogues.
    for xpi in sorted(root.glob("usr/lib/firefox-esr/browser/extensions/*.xpi")):
        with zipfile.ZipFile(xpi) as archive:
            for name in sorted(archive.namelist()):
                if name.endswith(".ftl"):
                    yield from parse_ftl(archive.read(name).decode("utf-8", "replace")).values()
                elif name.endswith(".properties"):
                    yield from parse_properties(archive.read(name).decode("utf-8", "replace")).values()


def _read_gnome_docs(root: Path, language: str) -> Iterator[str]:
    locale = GNOME_LOCALES.get(language, language)
    for page in sorted(root.glob(f"usr/share/help/{locale}/*/*.page")):
        yield from parse_mallard(page.read_text(encoding="utf-8", errors="replace"))


def _read_gcompris(root: Path, language: str) -> Iterator[str]:
    folder = root / "usr/share/gcompris-qt/translations"
    if language == "en":
        sources: set[str] = set()
        for qm in sorted(folder.glob("gcompris_*.qm")):
            sources.update(src for src, _ in parse_qm(qm.read_bytes()) if src)
        yield from sorted(sources)
        return
    qm = folder / f"gcompris_{language}.qm"
    if qm.is_file():
        yield from (translation for _, translation in parse_qm(qm.read_bytes()))


# Languages each multi-language package has (Debian bookworm), so that we do not fetch 44 MB of GCompris
# for a language it lacks. A language missing here is simply not looked for in that package.
_GNOME_LANGUAGES = frozenset(
    "en as ca cs da de el es fa fi fr gl gu he hi hr hu id it ja kn ko lt lv mr nl pa pl "
    "pt ro ru sl sr sv ta te tr uk vi zh".split()
)
_GCOMPRIS_LANGUAGES = frozenset(
    "en az be br ca cs de el es et eu fi fr he hr hu id it lt mk ml nl nn pl pt ro ru sk "
    "sl sq sv tr uk".split()
)

SOURCES: tuple[Source, ...] = (
    Source("firefox-esr-l10n", "MPL-2.0", _firefox_package, _read_firefox),
    Source(
        "gnome-user-docs",
        "CC-BY-SA-3.0",
        lambda _: "gnome-user-docs",
        _read_gnome_docs,
        lambda language: language in _GNOME_LANGUAGES,
    ),
    Source(
        "gcompris-qt-data",
        "GPL-3.0-or-later",
        lambda _: "gcompris-qt-data",
        _read_gcompris,
        lambda language: language in _GCOMPRIS_LANGUAGES,
    ),
)


def raw_strings(source: Source, language: str, cache: Path | None = None) -> Iterator[str]:
    """The raw catalogue strings of `language` in `source` (nothing if the package lacks the language)."""
    if not source.has_language(language):
        return iter(())
    root = unpacked_package(source.package(language), cache)
    return source.read(root, language)
