"""No import cycles in agent/, not even one hidden behind an import inside a function."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _tool():
    spec = importlib.util.spec_from_file_location("import_cycles", REPO / "tools" / "import_cycles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_agent_has_no_import_cycles():
    tool = _tool()
    modules = tool.module_names(REPO / "agent")
    edges = {name: tool.imported_modules(name, path, set(modules)) for name, path in modules.items()}
    graph = {name: {t for t, where, _ in found if where != tool.HINT} for name, found in edges.items()}
    assert tool.strongly_connected(graph) == [], "run `.venv/bin/python tools/import_cycles.py` to see where"


def test_a_cycle_behind_a_function_level_import_is_found(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def f():\n    from pkg.a import thing\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    tool = _tool()
    modules = tool.module_names(package)
    edges = {name: tool.imported_modules(name, path, set(modules)) for name, path in modules.items()}
    assert edges["pkg.a"] == [("pkg.b", tool.MODULE, 1)]
    assert edges["pkg.b"] == [("pkg.a", tool.FUNCTION, 2)]
    assert edges["pkg.c"] == [("pkg.a", tool.HINT, 3)]
    graph = {name: {t for t, _, _ in found} for name, found in edges.items()}
    assert tool.strongly_connected(graph) == [["pkg.a", "pkg.b"]]
