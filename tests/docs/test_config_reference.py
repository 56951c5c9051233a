"""docs/config-reference.md is generated from the config models; this fails while it is stale."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from agent import registry
from agent.component import Kind

REPO = Path(__file__).resolve().parent.parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("gen_config_reference", REPO / "tools" / "gen_config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_config_reference_is_current():
    generated = _generator().render()
    committed = (REPO / "docs" / "config-reference.md").read_text()
    assert committed == generated, (
        "docs/config-reference.md is stale: run `.venv/bin/python tools/gen_config_reference.py` and commit it")


def test_every_component_and_its_keys_are_documented():
    text = (REPO / "docs" / "config-reference.md").read_text()
    for kind in Kind:
        for type_, factory in registry.factories(kind).items():
            assert f"### {kind.value} `{type_}`" in text
            for name, field in factory.config_model.model_fields.items():
                assert f"| `{field.alias or name}` |" in text, (type_, name)


def test_comments_beside_fields_become_notes():
    rows = {path: note for path, _, _, note in _generator().rows(
        registry.lookup(Kind.RECEIVER, "predictionlog").config_model)}
    assert rows["feature_names"].startswith("names of features logged as a list")
    assert rows["start_at"].startswith("Where to begin in files found on the very first run")
    assert "fields.timestamp" in rows
