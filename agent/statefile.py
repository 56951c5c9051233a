"""One atomic write for every file Vigil keeps across a restart, and one way to name it.

The bytes go to `<name>.tmp` in the target's directory, are flushed and
fsynced, replace the target with one rename, and the directory is fsynced so
the rename itself survives a power cut. A crash at any point leaves the old
file or the new one, never half of one; a failed write removes its temporary
file and leaves the old file as it was.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path


def safe_name(name: str) -> str:
    """A component id (or any name) as one path component: `alerts/prod` -> `alerts%2Fprod`."""
    return urllib.parse.quote(name, safe="") or "_"


def temporary_path(path: Path) -> Path:
    """Where `write_atomic` stages `path`; a crash can leave it behind, and the next write reuses it."""
    return path.with_name(path.name + ".tmp")


def write_atomic(path: str | Path, data: bytes | str, *, durable: bool = True, mode: int = 0o666) -> None:
    """Replace `path` with `data` in one step; raises OSError with the old file intact.

    `durable=False` skips both fsyncs: still atomic, but a power cut may undo the write (for a caller
    whose config chose speed over durability). `mode` is the new file's permissions before the umask
    (0o600 for a file only Vigil should read). Blocking.
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass  # the rename is done; only its durability across a power cut is less certain
