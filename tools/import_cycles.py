"""Finds import cycles between the modules of a package (by default `agent/`), read with ast.

Two graphs: the imports a module runs when it is loaded (module level, `if TYPE_CHECKING:`
left out), and those plus the imports inside functions, which a cycle can hide behind.
Prints every cycle (a strongly connected set of modules) with the imports that close it;
exits 1 if there is one.

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


def _imports(node: ast.AST, in_function: bool, found: list[tuple[ast.stmt, bool]]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            found.append((child, in_function))
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.orelse:
                _imports(stmt, in_function, found)
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            _imports(child, True, found)
        else:
            _imports(child, in_function, found)


def imported_modules(name: str, path: Path, known: set[str]) -> list[tuple[str, bool, int]]:
    """(module imported, whether from inside a function, line) for each import of a known module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[ast.stmt, bool]] = []
    _imports(ast.parse(path.read_text(), str(path)), False, found)
    out = []
    for stmt, in_function in found:
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
            if target and target != name:
                out.append((target, in_function, stmt.lineno))
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
    for label, with_functions in (("module-level imports", False), ("with imports inside functions", True)):
        graph = {name: {t for t, in_function, _ in found if with_functions or not in_function}
                 for name, found in edges.items()}
        components = strongly_connected(graph)
        print(f"{label}: {len(components)} cycle(s)")
        for component in components:
            cycles += 1
            print("  " + " <-> ".join(component))
            for name in component:
                for target, in_function, line in edges[name]:
                    if target in component and (with_functions or not in_function):
                        where = " (in a function)" if in_function else ""
                        print(f"    {modules[name].relative_to(root.parent)}:{line} imports {target}{where}")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
