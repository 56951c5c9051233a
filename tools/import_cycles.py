"""Finds import cycles between the modules of a package (by default `agent/`), read with ast.

Two graphs: the imports a module runs when it is loaded (module level, `if TYPE_CHECKING:`
left out), and those plus the imports inside functions, which a cycle can hide behind.
Prints every cycle (a strongly connected set of modules) with the imports that close it;
exits 1 if there is one. Cycles closed only by `TYPE_CHECKING` imports (type hints, which
the style allows) are listed after them, for information.

    python tools/import_cycles.py [package directory]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def module_names(root: Path) -> dict[str, Path]:
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


# Where an import runs: when the module loads, when a function is called, or never (type hints).
MODULE, FUNCTION, HINT = "module", "function", "hint"


def _imports(nodes: list[ast.AST], where: str, found: list[tuple[ast.stmt, str]]) -> None:
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append((node, where))
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            _imports(node.body, HINT, found)
            _imports(node.orelse, where, found)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            _imports(list(ast.iter_child_nodes(node)), FUNCTION if where == MODULE else where, found)
        else:
            _imports(list(ast.iter_child_nodes(node)), where, found)


def imported_modules(name: str, path: Path, known: set[str]) -> list[tuple[str, str, int]]:
    """(module imported, where the import runs, line) for each import of a known module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[ast.stmt, str]] = []
    _imports(ast.parse(path.read_text(), str(path)).body, MODULE, found)
    out = []
    for stmt, where in found:
        if isinstance(stmt, ast.Import):
            targets = [alias.name for alias in stmt.names]
        else:
            base = stmt.module or ""
            if stmt.level:
                anchor = package.split(".")[: len(package.split(".")) - stmt.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the submodule; `from mod import name` the module.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in stmt.names]
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name and (target, where, stmt.lineno) not in out:
                out.append((target, where, stmt.lineno))
    return out


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; only the components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "agent").resolve()
    modules = module_names(root)
    edges = {name: imported_modules(name, path, set(modules)) for name, path in modules.items()}
    cycles = 0
    for label, kinds in (("module-level imports", {MODULE}), ("with imports inside functions", {MODULE, FUNCTION}),
                         ("with TYPE_CHECKING imports too (allowed)", {MODULE, FUNCTION, HINT})):
        graph = {name: {t for t, where, _ in found if where in kinds} for name, found in edges.items()}
        components = strongly_connected(graph)
        print(f"{label}: {len(components)} cycle(s)")
        for component in components:
            if HINT not in kinds:
                cycles += 1
            print("  " + " <-> ".join(component))
            for name in component:
                for target, where, line in edges[name]:
                    if target in component and where in kinds:
                        note = "" if where == MODULE else f" (in a {where})" if where == FUNCTION else " (type hint)"
                        print(f"    {modules[name].relative_to(root.parent)}:{line} imports {target}{note}")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
