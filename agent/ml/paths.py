"""Where an `ml` processor keeps what must survive a restart: learned references and the label join."""

from __future__ import annotations

import hashlib
from pathlib import Path

from agent import statefile

_MAX_NAME = 200


def engine_state_dir(state_dir: str | Path, processor_id: str) -> Path:
    return Path(state_dir) / "ml" / safe_name(processor_id)


def profile_path(engine_dir: Path, model: str, version: str) -> Path:
    """The reference learned for a model version."""
    return engine_dir / safe_name(model) / f"{safe_name(version or '-')}.vigilprofile"


def label_join_path(engine_dir: Path) -> Path:
    return engine_dir / "@labels.pb"  # '@' is quoted in model directory names: no clash


def safe_name(name: str) -> str:
    """A name usable as one path component (a long one is cut and told apart by a hash of it)."""
    quoted = statefile.safe_name(name)
    if len(quoted) > _MAX_NAME:  # file names are at most 255 bytes; ".vigilprofile" follows
        quoted = f"{quoted[:_MAX_NAME - 17]}~{hashlib.sha256(name.encode()).hexdigest()[:16]}"
    return quoted
