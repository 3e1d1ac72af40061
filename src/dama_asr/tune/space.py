"""What `dama tune` searches: axes of config values, parsed from `--axis` or chosen by method.

An axis is one or more dotted TrainConfig fields and the values they take together:

    optim.lr=3e-4|1e-3|3e-3                       one field, three values
    adapter.r_high,adapter.r_low=16,4|32,8|64,16   two fields that move together (DAMA's rank pair)

Values are read as YAML scalars (`3e-4` is a float, `true` a bool), then checked by building the config.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from dama_asr.errors import UserError


@dataclass(frozen=True)
class Axis:
    fields: tuple[str, ...]
    values: tuple[tuple, ...]  # one tuple per point, aligned with `fields`

    @property
    def name(self) -> str:
        return ",".join(self.fields)

    def settings(self, index: int) -> dict:
        return dict(zip(self.fields, self.values[index], strict=True))

    def label(self, index: int) -> str:
        return ",".join(short_value(v) for v in self.values[index])


def short_value(value) -> str:
    if isinstance(value, tuple):  # a list-valued field: augment.speed_factors=[0.9 1.1]
        return "+".join(short_value(v) for v in value) or "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _numbers(text: str, axis: str) -> tuple[float, ...]:
    """`[0.9 1.1]` (spaces or semicolons between numbers; `[]` = none): one point of a list field. Commas
    and bars already separate fields and points."""
    try:
        return tuple(float(v) for v in text[1:-1].replace(";", " ").split())
    except ValueError:
        raise UserError(f"--axis {axis}: {text!r} is not a list of numbers such as [0.9 1.1]") from None


def _scalar(text: str, axis: str):
    if text.startswith("[") and text.endswith("]"):
        return _numbers(text, axis)
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, (int, float, str, bool)):
        raise UserError(f"--axis {axis}: {text!r} is not a number, word or true/false")
    # YAML 1.1 reads 3e-4 as a string; a number-looking string is meant as a number.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_axis(text: str) -> Axis:
    """One `--axis FIELD[,FIELD...]=V[,V...]|V[,V...]...`; a list-valued field's V is `[a b ...]`."""
    names, sep, points = text.partition("=")
    fields = tuple(n.strip() for n in names.split(",") if n.strip())
    if not sep or not fields or not points.strip():
        raise UserError(f"--axis expects FIELD=V1|V2|... (e.g. optim.lr=3e-4|1e-3), got {text!r}")
    values = []
    for point in points.split("|"):
        parts = tuple(_scalar(p.strip(), text) for p in point.split(","))
        if len(parts) != len(fields):
            raise UserError(
                f"--axis {text}: {point!r} gives {len(parts)} value(s) for {len(fields)} field(s)"
            )
        values.append(parts)
    if len(set(values)) != len(values):
        raise UserError(f"--axis {text}: a value is listed twice")
    return Axis(fields, tuple(values))


def default_axes(method: str) -> list[Axis]:
    """The search a new user gets: the method's own `tune_axes` (the registry's spec), centred on the
    shipped recipes' values."""
    from dama_asr.adapters.registry import get_method

    return [parse_axis(text) for text in get_method(method).tune_axes]


def axes_overlap(axes: list[Axis]) -> str | None:
    """A field named by two axes (the second would silently override the first), or None."""
    seen: set[str] = set()
    for axis in axes:
        for f in axis.fields:
            if f in seen:
                return f
            seen.add(f)
    return None
