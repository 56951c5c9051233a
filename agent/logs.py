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


_LEVELS = {"warn": "WARNING", "dpanic": "ERROR", "panic": "ERROR", "fatal": "CRITICAL"}


class _Formatter(logging.Formatter):
    def __init__(self, encoding: str, journald: bool, initial_fields: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._encoding = encoding
        self._journald = journald
        self._initial = dict(initial_fields or {})

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {}
        if not self._journald:
            fields["ts"] = self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}"
        fields.update(level=record.levelname.lower(), logger=record.name, msg=record.getMessage())
        fields.update((k, v) for k, v in self._initial.items() if k not in fields)
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        if self._encoding == "json":
            line = json.dumps(fields, ensure_ascii=False, default=str)
        elif self._encoding == "logfmt":
            line = " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields.items())
        else:
            head = f"{fields['ts']} " if "ts" in fields else ""
            line = f"{head}{record.levelname} {record.name}: {fields['msg']}"
            if self._initial:  # as zap's console encoder: the context as JSON at the end
                line += "\t" + json.dumps(self._initial, ensure_ascii=False, default=str)
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
    """Send every log record where `output_paths` says (stderr, stdout, files; `stream` instead of
    stderr) in the configured encoding and level."""
    handlers: list[logging.Handler] = []
    for path in config.output_paths:
        if path in ("stderr", "stdout"):
            target = (sys.stderr if stream is None else stream) if path == "stderr" else sys.stdout
            handler: logging.Handler = logging.StreamHandler(target)
            journald = under_journald(target)
        else:
            handler, journald = logging.FileHandler(path, encoding="utf-8"), False
        handler.setFormatter(_Formatter(config.encoding, journald, config.initial_fields))
        handlers.append(handler)
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, logging.FileHandler):
            old.close()
    root.handlers[:] = handlers
    root.setLevel(_LEVELS.get(config.level, config.level.upper()))
