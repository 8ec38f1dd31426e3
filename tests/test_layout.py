"""The package's layout: no import cycles, no imports of the package hidden in functions, and
only the entry point, the errors and the file helpers at the package root."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "neurofptt"
ROOT_MODULES = {"__init__.py", "__main__.py", "cli.py", "errors.py", "io.py", "py.typed"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The package modules an import statement loads (``from a import b`` may load ``a.b``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        parts = module.split(".") if is_package else module.split(".")[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    """Edges between the package's modules (module-level imports) and the imports of the
    package made inside functions."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    nested: list[str] = []
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        for node, in_function in walk_imports(tree):
            targets = imported(node, module, path.name == "__init__.py")
            targets = [t for t in targets if t.split(".")[0] == "neurofptt"]
            if in_function and targets:
                nested.append(f"{module}:{node.lineno} imports {targets[0]}")
            elif not in_function:
                graph[module].update(t for t in targets if t in files and t != module)
    return graph, nested


def walk_imports(tree: ast.Module):
    """``(import statement, inside a function)`` for every import that runs; imports under
    ``if TYPE_CHECKING:`` are for annotations only and are skipped."""

    def visit(node: ast.AST, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", None) == "TYPE_CHECKING":
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, in_function
            function = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            yield from visit(child, in_function or function)

    yield from visit(tree, False)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (a list of modules, first repeated last), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := walk(node)):
            return cycle
    return None


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles() -> None:
    graph, _ = import_graph()
    assert len(graph) > 40
    assert find_cycle(graph) is None


def test_no_package_imports_inside_functions() -> None:
    _, nested = import_graph()
    assert nested == []


def test_package_root_holds_only_the_entry_points() -> None:
    loose = {p.name for p in PACKAGE.iterdir() if p.is_file()} - ROOT_MODULES
    assert loose == set()
