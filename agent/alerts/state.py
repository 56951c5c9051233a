"""Files under `state_dir` that survive a restart, written atomically.

A write goes to a temporary file in the same directory, is flushed to disk,
and replaces the old file with one rename, so a crash leaves the old file or
the new one, never half of one. A file that cannot be read back is moved
aside (`.corrupt`) and the component starts empty rather than not at all.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any


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
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        try:
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            pass  # the rename is done; only its durability across a power cut is less certain
        self._last = text
        return True


def safe_name(name: str) -> str:
    """A component id as one path component (`alerts/prod` → `alerts%2Fprod`)."""
    return urllib.parse.quote(name, safe="") or "_"
