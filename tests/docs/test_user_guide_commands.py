"""The user guide's offline commands run as written: section 3's `vigil profile build` and `show`, then
section 4's `vigil analyze … --format html`, taken from the guide's text, on a training file and a day of
logged predictions with the columns the guide names (one of them shifted)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np

from tests.vigil_cli import REPO, run_cli

GUIDE = REPO / "docs" / "user-guide.md"


def guide_commands() -> list[list[str]]:
    """Every `vigil profile …` and `vigil analyze …` command in the guide's sh blocks, continuations joined."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:2] in (["vigil", "profile"], ["vigil", "analyze"]):
                commands.append(words[1:])
    return commands


def rows(seed: int, n: int, shift: float) -> list[str]:
    """CSV lines (no header) of `n` predictions; `shift` moves the amounts."""
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3.0, 0.5, n) + shift
    age = rng.normal(40, 10, n)
    score = 1 / (1 + np.exp(-(amount - 25) / 10))
    truth = rng.uniform(size=n) < score
    return [f"r{seed}-{i},{amount[i]:.3f},{age[i]:.2f},{int(score[i] > 0.5)},{score[i]:.4f},{int(truth[i])}"
            for i in range(n)]


HEADER = "request_id,amount,age,pred,score,is_fraud"


def test_sections_3_and_4_run_as_written(tmp_path: Path):
    commands = guide_commands()
    build = next(c for c in commands if c[:2] == ["profile", "build"] and "fraud-3.vigilprofile" in c)
    show = next(c for c in commands if c[:2] == ["profile", "show"])
    analyze = next(c for c in commands if c[0] == "analyze" and "html" in c)
    (tmp_path / "train.csv").write_text("\n".join([HEADER, *rows(1, 5000, 0.0)]) + "\n")
    # the day's second half moved
    (tmp_path / "today.csv").write_text("\n".join([HEADER, *rows(2, 5000, 0.0), *rows(3, 5000, 15.0)]) + "\n")
    for command in (build, show, analyze):
        done = run_cli(*command, cwd=tmp_path, timeout=300)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    report = (tmp_path / "report.html").read_text()
    assert report.startswith("<!doctype html>") and "amount" in report and "multivariate" in report.lower()
