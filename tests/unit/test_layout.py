"""The package's shape, pinned: no import cycles, small modules, pure layers that stay pure.

Imports are read from the source (module-level and function-level alike), so a cycle hidden by an
import inside a function is still a cycle here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "acards"
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """The acards modules ``name`` imports, anywhere in its body."""
    found = set()
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    # Imports under `if TYPE_CHECKING:` name types for the checker and never run.
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING" for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from acards.x import y` imports acards.x.y when y is a module, else acards.x
            targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module
                       for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in MODULES and t != name)
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for name in GRAPH:
        if name not in index:
            visit(name)
    return found


def _reaches(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in GRAPH[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_no_import_cycles():
    assert _cycles() == []


def test_the_cycle_check_can_fail():
    GRAPH["acards.vocabulary"].add("acards.stats")
    GRAPH["acards.stats"].add("acards.vocabulary")
    try:
        assert _cycles() == [["acards.stats", "acards.vocabulary"]]
    finally:
        GRAPH["acards.vocabulary"].discard("acards.stats")
        GRAPH["acards.stats"].discard("acards.vocabulary")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_a_room_with_many_jobs(name):
    assert len(MODULES[name].read_text(encoding="utf-8").splitlines()) <= MAX_LINES


@pytest.mark.parametrize("pure", ["acards.stats", "acards.distributions", "acards.mechanism", "acards.diagnostics", "acards.merkle", "acards.vocabulary"])
def test_pure_layers_reach_no_io_layer(pure):
    """Pure computation never reaches the card, evidence, generation, presentation or CLI layers."""
    io_layers = ("acards.card", "acards.evidence", "acards.generate", "acards.pipeline", "acards.present", "acards.cli",
                 "acards.registry", "acards.site", "acards.schemas", "acards.resources", "acards.settings", "acards.jsonl")
    modules = [m for m in MODULES if m == pure or m.startswith(pure + ".")]
    for module in modules:
        reached = _reaches(module)
        assert not [m for m in reached if m.startswith(io_layers)], module


def test_generation_never_imports_the_pipeline():
    for module in MODULES:
        if module.startswith("acards.generate"):
            assert not [m for m in GRAPH[module] if m.startswith("acards.pipeline")], module


def test_the_site_reads_the_registry_only_through_its_reader():
    for module in MODULES:
        if module.startswith("acards.site"):
            registry = [m for m in GRAPH[module] if m.startswith("acards.registry")]
            assert set(registry) <= {"acards.registry.reader"}, (module, registry)
