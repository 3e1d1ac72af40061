"""Readers for the translation formats found in Debian packages; each returns the translated strings.

Plain-Python readers keep the toolkit free of gettext/Qt/Fluent dependencies: the formats are small.
Every reader is lenient: an entry it cannot understand is skipped, never fatal, because one odd entry
in a catalogue of thousands must not cost the whole catalogue.
"""

from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET

_FTL_MESSAGE = re.compile(r"^(-?[A-Za-z][\w-]*)\s*=\s?(.*)$")
_FTL_ATTRIBUTE = re.compile(r"^\s+\.([A-Za-z][\w-]*)\s*=\s?(.*)$")


def parse_ftl(text: str) -> dict[str, str]:
    """Fluent (.ftl): `key = value`, indented continuation lines, `.attr = value` attributes.

    Continuation lines are kept on their own lines (Fluent joins them with newlines); attributes are
    returned as `key.attr`. Comments and blank lines end nothing, as in Fluent.
    """
    entries: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        if line.startswith("#"):
            current = None
            continue
        message = _FTL_MESSAGE.match(line)
        if message:
            current = message.group(1)
            entries[current] = [message.group(2)]
            continue
        attribute = _FTL_ATTRIBUTE.match(line)
        if attribute and current is not None:
            base = current.split(".", 1)[0]
            current = f"{base}.{attribute.group(1)}"
            entries[current] = [attribute.group(2)]
            continue
        if current is not None and (line.startswith((" ", "\t")) or not line.strip()):
            entries[current].append(line.strip())
    return {key: "\n".join(lines).strip() for key, lines in entries.items() if "".join(lines).strip()}


def _unescape_properties(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", value[i + 2 : i + 6]):
                out.append(chr(int(value[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append({"n": "\n", "t": "\t", "r": ""}.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def parse_properties(text: str) -> dict[str, str]:
    """Java-style .properties (Mozilla chrome): `key = value`, `#`/`!` comments, `\\` continuations."""
    entries: dict[str, str] = {}
    logical: list[str] = []
    for raw in text.splitlines():
        line = raw.strip() if not logical else raw.lstrip()
        if not logical and (not line or line.startswith(("#", "!"))):
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            logical.append(line[:-1])
            continue
        logical.append(line)
        joined, logical = "".join(logical), []
        key, sep, value = joined.partition("=")
        if sep:
            entries[key.strip()] = _unescape_properties(value.strip())
    return entries


def parse_mo(data: bytes) -> dict[str, str]:
    """GNU gettext .mo: msgid -> msgstr. Plural entries give their first form; contexts are dropped."""
    if len(data) < 20:
        return {}
    magic = struct.unpack("<I", data[:4])[0]
    if magic == 0x950412DE:
        order = "<"
    elif magic == 0xDE120495:
        order = ">"
    else:
        raise ValueError("not a gettext .mo file (bad magic number)")
    _revision, count, orig_at, trans_at = struct.unpack(order + "4I", data[4:20])
    entries: dict[str, str] = {}
    for n in range(count):
        olen, ooff = struct.unpack(order + "2I", data[orig_at + 8 * n : orig_at + 8 * n + 8])
        tlen, toff = struct.unpack(order + "2I", data[trans_at + 8 * n : trans_at + 8 * n + 8])
        msgid = data[ooff : ooff + olen].decode("utf-8", "replace")
        msgstr = data[toff : toff + tlen].decode("utf-8", "replace")
        if not msgid:  # the header entry
            continue
        msgid = msgid.split("\x04", 1)[-1].split("\x00", 1)[0]
        entries[msgid] = msgstr.split("\x00", 1)[0]
    return entries


_QM_MAGIC = bytes.fromhex("3cb86418caef9c95cd211cbf60a1bddd")
_QM_MESSAGES = 0x69


def parse_qm(data: bytes) -> list[tuple[str | None, str]]:
    """Qt .qm: (source text or None, first translation) pairs, read from the Messages block."""
    if not data.startswith(_QM_MAGIC):
        raise ValueError("not a Qt .qm file (bad magic number)")
    pos, messages = len(_QM_MAGIC), b""
    while pos + 5 <= len(data):
        tag, length = data[pos], struct.unpack(">I", data[pos + 1 : pos + 5])[0]
        if tag == _QM_MESSAGES:
            messages = data[pos + 5 : pos + 5 + length]
        pos += 5 + length
    out: list[tuple[str | None, str]] = []
    source: str | None = None
    translations: list[str] = []
    pos = 0
    while pos < len(messages):
        tag = messages[pos]
        pos += 1
        if tag == 1:  # end of one message
            if translations and translations[0]:
                out.append((source, translations[0]))
            source, translations = None, []
        elif tag == 5:  # obsolete: a 4-byte hash
            pos += 4
        elif tag in (3, 6, 7, 8):  # translation (UTF-16BE), source text, context, comment (UTF-8)
            length = struct.unpack(">I", messages[pos : pos + 4])[0]
            pos += 4
            if length == 0xFFFFFFFF:  # a null translation
                continue
            chunk = messages[pos : pos + length]
            pos += length
            if tag == 3:
                translations.append(chunk.decode("utf-16-be", "replace"))
            elif tag == 6:
                source = chunk.decode("utf-8", "replace")
        else:  # an unknown tag: the rest cannot be framed
            break
    return out


_MALLARD_TEXT_TAGS = {"p", "title", "desc"}


def parse_mallard(text: str) -> list[str]:
    """GNOME help (.page, Mallard XML): the text of each paragraph, inline markup flattened."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return []
    out = []
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        if element.tag.rsplit("}", 1)[-1] in _MALLARD_TEXT_TAGS:
            flat = " ".join("".join(element.itertext()).split())
            if flat:
                out.append(flat)
    return out
