"""Vigil's own logs: `console`, `json` or `logfmt` on stderr, set by `service.telemetry.logs`.

Under systemd (stderr is the journal stream named by `JOURNAL_STREAM`) lines
carry no timestamp, which journald adds itself, and start with the
`<priority>` prefix of sd-daemon(3), so `journalctl -p warning` works.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, TextIO

from agent.config import LogsTelemetryConfig

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def under_journald(stream: TextIO, environ: dict[str, str] | None = None) -> bool:
    """True when `stream` is the journal stream systemd connected (JOURNAL_STREAM is `dev:inode`)."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (stat.st_dev, stat.st_ino) == (int(dev), int(ino))


class _Formatter(logging.Formatter):
    def __init__(self, encoding: str, journald: bool) -> None:
        super().__init__()
        self._encoding = encoding
        self._journald = journald

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {}
        if not self._journald:
            fields["ts"] = self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}"
        fields.update(level=record.levelname.lower(), logger=record.name, msg=record.getMessage())
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        if self._encoding == "json":
            line = json.dumps(fields, ensure_ascii=False)
        elif self._encoding == "logfmt":
            line = " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields.items())
        else:
            head = f"{fields['ts']} " if "ts" in fields else ""
            line = f"{head}{record.levelname} {record.name}: {fields['msg']}"
            if record.exc_info:
                line += "\n" + fields["exception"]
        if self._journald:
            line = f"<{_PRIORITY.get(record.levelno, 6)}>{line}"
        return line


def _logfmt_value(value: Any) -> str:
    text = str(value)
    if text and not any(c in text for c in ' ="\\\n\t'):
        return text
    return json.dumps(text, ensure_ascii=False)  # quoted, with \" \\ \n escaped


def setup(config: LogsTelemetryConfig, stream: TextIO | None = None) -> None:
    """Send every log record to stderr (or `stream`) in the configured encoding and level."""
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_Formatter(config.encoding, under_journald(stream)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel("WARNING" if config.level == "warn" else config.level.upper())
