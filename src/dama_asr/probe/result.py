"""The probe's result: a dataclass, its JSON file (written atomically) and its PNG plot."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dama_asr.atomic import atomic_write_text
from dama_asr.probe.curve import ProbeError, ThetaSuggestion

FORMAT = "dama-probe"
VERSION = 1


@dataclass(frozen=True)
class LayerCurve:
    """Cross-validated accuracy per layer; layers[0] == 0 is the embedding output."""

    layers: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    folds: tuple[tuple[float, ...], ...] = ()

    @property
    def num_layers(self) -> int:
        return len(self.layers) - 1


@dataclass(frozen=True)
class ProbeResult:
    model: str
    languages: dict[str, int]  # usable utterances per language
    chance: float  # accuracy of always guessing the largest language
    decoder: LayerCurve | None
    encoder: LayerCurve | None
    suggestion: ThetaSuggestion
    settings: dict = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def thetas(self) -> tuple[float, float]:
        return self.suggestion.theta1, self.suggestion.theta2

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, record: dict) -> ProbeResult:
        def curve(value: dict | None) -> LayerCurve | None:
            if value is None:
                return None
            return LayerCurve(
                layers=tuple(value["layers"]),
                mean=tuple(value["mean"]),
                std=tuple(value["std"]),
                folds=tuple(tuple(f) for f in value.get("folds", ())),
            )

        return cls(
            model=record["model"],
            languages=dict(record["languages"]),
            chance=float(record["chance"]),
            decoder=curve(record.get("decoder")),
            encoder=curve(record.get("encoder")),
            suggestion=ThetaSuggestion(**record["suggestion"]),
            settings=dict(record.get("settings", {})),
            skipped=dict(record.get("skipped", {})),
            seconds=dict(record.get("seconds", {})),
        )


def save_probe(result: ProbeResult, path: str | Path) -> Path:
    path = Path(path)
    atomic_write_text(
        path, json.dumps(result.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    )
    return path


def load_probe(path: str | Path) -> ProbeResult:
    """Read a probe JSON back (the DAMA planner takes theta1/theta2 from `result.thetas`)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProbeError(f"probe result {path} does not exist; run `dama probe` first") from None
    except json.JSONDecodeError as err:
        raise ProbeError(f"{path} is not valid JSON ({err.msg})") from err
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ProbeError(f'{path} is not a `dama probe` result (no "format": "{FORMAT}")')
    if record.get("version") != VERSION:
        raise ProbeError(f"{path}: probe result version {record.get('version')}, this dama reads {VERSION}")
    try:
        return ProbeResult.from_dict(record)
    except (KeyError, TypeError) as err:
        raise ProbeError(f"{path}: malformed probe result ({err})") from err


def plot_probe(result: ProbeResult, path: str | Path) -> Path:
    """Accuracy against relative depth (layer / L) with a one-std band per curve, chance and thetas.

    Uses matplotlib's object API with the Agg canvas: no pyplot, no global backend switch.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    figure = Figure(figsize=(8, 5), dpi=120)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    for name, curve, color in (
        ("decoder", result.decoder, "tab:blue"),
        ("encoder", result.encoder, "tab:orange"),
    ):
        if curve is None:
            continue
        depth = [layer / curve.num_layers for layer in curve.layers]
        low = [m - s for m, s in zip(curve.mean, curve.std, strict=True)]
        high = [m + s for m, s in zip(curve.mean, curve.std, strict=True)]
        ax.fill_between(depth, low, high, color=color, alpha=0.2, linewidth=0)
        ax.plot(
            depth, curve.mean, "o-", color=color, label=f"{name} ({curve.num_layers} layers; 0 = embeddings)"
        )
    ax.axhline(result.chance, color="grey", linestyle=":", label=f"chance ({result.chance:.2f})")
    s = result.suggestion
    kind = "default" if s.fallback else "suggested"
    for theta, name, layer in ((s.theta1, "θ1", s.l_early), (s.theta2, "θ2", s.l_late)):
        ax.axvline(theta, color="tab:red", linestyle="--", alpha=0.7)
        ax.annotate(
            f"{name}={theta:.2f} ({kind}; layer {layer})",
            (theta, 0.3),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize=8,
            color="tab:red",
            ha="right",
            va="bottom",
        )
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(min(0.0, result.chance - 0.05), 1.05)
    ax.set_xlabel("relative depth (layer / number of layers)")
    ax.set_ylabel(f"language-ID accuracy ({result.settings.get('folds', '?')}-fold CV, mean ± std)")
    languages = ", ".join(f"{lang} {n}" for lang, n in sorted(result.languages.items()))
    prompt = result.settings.get("prompt", "?")
    ax.set_title(
        f"Layer-wise language-ID probe: {result.model}\n{languages} utterances; decoder prompt: {prompt}",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial.png")
    figure.savefig(tmp)
    tmp.replace(path)
    return path
