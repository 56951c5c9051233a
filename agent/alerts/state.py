"""The alerts processor's JSON files under `state_dir`, kept across a restart.

Writes go through `agent.statefile.write_atomic` and are skipped when nothing
changed. A file that cannot be read back is moved aside (`.corrupt`) and the
processor starts empty rather than not at all.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from agent.statefile import write_atomic


class StateFile:
    def __init__(self, path: Path, log: logging.Logger) -> None:
        self.path = path
        self._log = log
        self._last: str | None = None  # what was last written, to skip writing the same again

    def load(self) -> Any | None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._log.warning("cannot read %s (%s); starting without it", self.path, exc)
            return None
        try:
            data = json.loads(text)
        except ValueError as exc:
            aside = self.path.with_name(self.path.name + ".corrupt")
            self._log.warning("%s is damaged (%s); moved to %s, starting without it", self.path, exc, aside.name)
            try:
                os.replace(self.path, aside)
            except OSError:
                pass
            return None
        self._last = text
        return data

    def save(self, data: Any) -> bool:
        """Write `data` as JSON if it differs from what was last written; whether it wrote. Blocking."""
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        if text == self._last:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, text, mode=0o600)  # only Vigil's user reads alert state
        self._last = text
        return True
