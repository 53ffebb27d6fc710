"""Imports run one way: data -> models -> studies -> efficiency -> notebook layer.

Every import statement of the package is read, top level and inside functions (an import
inside a function is still a dependency; it only hides a cycle from Python), and mapped to the
folder or top-level module it names. The test fails on an import that goes up the layers, on a
cycle, and on any layer below the notebook layer importing workspace/report/stage_params/cli.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "polyspace_core"

# lowest first; a unit may import its own layer or any layer below it, never one above
LAYERS = [
    {"errors", "io", "seeding", "paths", "provenance", "measure", "checkpoints", "distributed", "viz", "scalar_log",
     "stats"},
    {"video"},
    {"datasets"},
    {"backbones"},
    {"features"},
    {"align"},
    {"fusion", "ffn", "colorize"},
    {"efficiency"},
    {"stage_params", "workspace", "report", "cli"},
]
NOTEBOOK_LAYER = LAYERS[-1]


def unit_of(module: str, package: str) -> str | None:
    """'polyspace_core.fusion.head' -> 'fusion'; the package itself ('__version__') -> None."""
    parts = module.split(".")
    if parts[0] != package or len(parts) == 1:
        return None
    return parts[1]


def import_edges(root: Path) -> dict[tuple[str, str], list[str]]:
    """(from unit, to unit) -> the 'file:line' places of every import between two units."""
    package = root.name
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        here = ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)
        container = ".".join(parts[:-1])  # the package a relative import starts from
        source = unit_of(here, package) if here != package else None
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = container.split(".")[: len(container.split(".")) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                    # `from . import x` names submodules (or the package's own attributes)
                    targets = [f"{stem}.{a.name}" for a in node.names] if node.module is None else [stem]
                else:
                    targets = [node.module or ""]
            else:
                continue
            for target in targets:
                dest = unit_of(target, package)
                is_module = dest is not None and ((root / dest).is_dir() or (root / f"{dest}.py").is_file())
                if source and is_module and dest != source:  # `from . import __version__` is no module
                    edges[(source, dest)].append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return edges


def find_cycle(edges) -> list[str] | None:
    graph = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def layer_of(unit: str) -> int:
    for i, layer in enumerate(LAYERS):
        if unit in layer:
            return i
    raise AssertionError(f"polyspace_core/{unit}: not in any layer of tests/test_layers.py; add it where it belongs")


def violations(edges) -> list[str]:
    found = []
    for (a, b), places in sorted(edges.items()):
        if b in NOTEBOOK_LAYER and a not in NOTEBOOK_LAYER:
            found.append(f"{a} imports the notebook layer ({b}) at {places[0]}")
        elif layer_of(b) > layer_of(a):
            found.append(f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)}) at {places[0]}")
    return found


def test_every_unit_has_a_layer():
    units = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    units |= {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    for unit in sorted(units):
        layer_of(unit)


def test_imports_run_one_way_without_cycles():
    edges = import_edges(PACKAGE)
    assert ("fusion", "measure") in edges  # the walk sees nested imports (fusion counts FLOPs inside functions)
    assert violations(edges) == []
    assert find_cycle(edges) is None


def test_the_check_catches_a_cycle_hidden_in_a_function(tmp_path):
    pkg = tmp_path / "polyspace_core"
    for unit in ("fusion", "efficiency"):
        (pkg / unit).mkdir(parents=True)
        (pkg / unit / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "workspace.py").write_text("")
    (pkg / "efficiency" / "cost.py").write_text("from ..fusion.head import FusionHead\n")
    (pkg / "fusion" / "head.py").write_text("class FusionHead: ...\n")
    (pkg / "fusion" / "evaluate.py").write_text("def cost():\n    from ..efficiency import cost\n"
                                                "    from polyspace_core.workspace import project_root\n")
    edges = import_edges(pkg)
    assert find_cycle(edges) in (["efficiency", "fusion", "efficiency"], ["fusion", "efficiency", "fusion"])
    found = violations(edges)
    assert any("fusion (layer 6) imports efficiency (layer 7)" in v for v in found)
    assert any("fusion imports the notebook layer (workspace)" in v for v in found)
