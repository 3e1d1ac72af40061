"""The layering contract: every import inside the package points down (README, "Layout").

Lazy imports inside functions count too: a cycle hidden in a function body is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "dama_asr"

# Bottom to top. A module may import its own layer and any layer below; the first matching prefix wins.
LAYERS: list[tuple[str, ...]] = [
    # neutral modules: nothing of dama_asr above them
    ("dama_asr", "dama_asr.errors", "dama_asr.accounting", "dama_asr.languages", "dama_asr.paths",
     "dama_asr.atomic", "dama_asr.durable", "dama_asr.integrity", "dama_asr.faults", "dama_asr.locks",
     "dama_asr.precision", "dama_asr.scoring", "dama_asr.allocator", "dama_asr.quiet", "dama_asr.memory"),
    ("dama_asr.data",),
    ("dama_asr.backbone",),
    ("dama_asr.features",),
    ("dama_asr.adapters",),
    ("dama_asr.inference", "dama_asr.evaluate"),
    ("dama_asr.export",),
    ("dama_asr.train", "dama_asr.probe"),
    ("dama_asr.bench", "dama_asr.report", "dama_asr.tune"),
    # commands: parse, call the library, print
    ("dama_asr.cli", "dama_asr.demo", "dama_asr.command_args", "dama_asr.adapter_args", "dama_asr.train_systems",
     "dama_asr.data.commands", "dama_asr.data.import_commands", "dama_asr.data.corpus_commands"),
]  # fmt: skip
TOP_ONLY = "dama_asr.testing"  # imports anything; nothing in the package imports it


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if module.endswith("_commands"):
        return len(LAYERS) - 1
    assert best is not None, module
    return best


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("dama_asr"):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("dama_asr"))
    return found


def test_imports_point_down_only() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        for target in sorted(imports_of(path)):
            if target == TOP_ONLY and module != TOP_ONLY:
                upward.append(f"{module} -> {target} (test factories are imported by tests only)")
            elif module != TOP_ONLY and layer_of(target) > layer_of(module):
                upward.append(f"{module} (layer {layer_of(module)}) -> {target} (layer {layer_of(target)})")
    assert not upward, "imports that point up:\n" + "\n".join(upward)
