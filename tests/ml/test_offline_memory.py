"""The offline commands keep freed memory for reuse (`agent.ml.offline.memory`): arrays of a column's
size freed and allocated again, on two threads as a chunk's columns are, come back without the
kernel faulting their pages in again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# In a process of its own: the setting is process-wide.
CHURN = """
import resource, sys, threading
import numpy as np
from agent.ml.offline.memory import reuse_freed_memory
applied = reuse_freed_memory() if sys.argv[1] == "reuse" else None

def work():
    for _ in range(40):
        arrays = [np.ones(1_000_000) for _ in range(6)]  # a 1 M-row column's worth each
        del arrays

before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
threads = [threading.Thread(target=work) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True, cwd=REPO)
    applied, faults = out.stdout.split()
    return applied, int(faults)


def test_freed_columns_are_reused_not_faulted_in_again() -> None:
    applied, reused = page_faults("reuse")
    if applied != "True":
        pytest.skip("the C library has no mallopt (not glibc)")
    _, default = page_faults("default")
    # 480 arrays of 8 MB: about 2,000 pages each when each is fresh memory.
    assert reused * 4 < default

