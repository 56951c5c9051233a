"""How the offline commands take memory (`agent.ml.offline.memory`): arrays of a column's size freed
and allocated again, as a chunk's are for the next, come back without the kernel faulting their
pages in again; numpy asks for small pages unless told otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# In a process of its own: the setting is process-wide.
CHURN = """
import resource, sys
import numpy as np
from agent.ml.offline.memory import reuse_freed_memory
applied = reuse_freed_memory() if sys.argv[1] == "reuse" else None
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    arrays = [np.ones(1_000_000) for _ in range(6)]  # a chunk's worth of 1 M-row columns
    del arrays
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> tuple[str, int]:
    env = {**os.environ, "NUMPY_MADVISE_HUGEPAGE": "0"}  # a fault per 4 KiB page, whatever the kernel's setting
    out = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True, cwd=REPO,
                         env=env)
    applied, faults = out.stdout.split()
    return applied, int(faults)


def test_freed_columns_are_reused_not_faulted_in_again() -> None:
    applied, reused = page_faults("reuse")
    if applied != "True":
        pytest.skip("the C library has no mallopt (not glibc)")
    _, default = page_faults("default")
    # 40 rounds of six 8 MB arrays: about 12,000 pages a round when each round's memory is fresh.
    assert reused < 2 * 12_000 < 20 * 12_000 < default

PAGES = """
import os, sys
from agent.ml.offline.memory import prefer_small_pages
asked = prefer_small_pages()
import numpy as np
print(asked, np._core.multiarray._get_madvise_hugepage())
"""


@pytest.mark.parametrize("setting, expected", [(None, "True False"), ("1", "False True")])
def test_numpy_asks_for_small_pages_unless_told_otherwise(setting: str | None, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if setting is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = setting
    out = subprocess.run([sys.executable, "-c", PAGES], capture_output=True, text=True, check=True, cwd=REPO, env=env)
    assert out.stdout.split() == expected.split()
