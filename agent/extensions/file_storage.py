"""`file_storage`: a directory for what must survive a restart, named the Collector's way.

An exporter's `sending_queue.storage: file_storage/NAME` puts its persistent queue
(`agent.exporters.queue_persistent`) under this extension's directory, in
`exporter_<exporter id>`. The loader resolves that reference, so the queue itself
knows nothing of extensions. Vigil's queue gives disk space back a segment at a
time as requests are sent, so the bbolt `compaction` settings have nothing to do.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, field_validator

from agent.component import Factory, Kind, Settings
from agent.configmodel import Duration, StrictModel


class CompactionConfig(StrictModel):
    # All accepted as the Collector has them; see the module docstring for why they do nothing.
    on_start: bool = False
    on_rebound: bool = False
    directory: str | None = None
    max_transaction_size: int = Field(65536, ge=0)
    rebound_needed_threshold_mib: int = Field(100, ge=0)
    rebound_trigger_threshold_mib: int = Field(10, ge=0)
    check_interval: Duration = 5.0
    cleanup_on_start: bool = False


class FileStorageConfig(StrictModel):
    # Default: <service.state_dir>/file_storage/<extension id> (the Collector's: /var/lib/otelcol/file_storage).
    directory: str | None = None
    # The Collector's lock timeout on its database file; Vigil's queue takes its directory's lock at once.
    timeout: Duration = 1.0
    # true: every request is on disk before the sender is answered (the queue's fsync: always);
    # false: fsync once a second (fsync: interval; kill -9 loses nothing, a power cut up to a second).
    fsync: bool = False
    compaction: CompactionConfig = CompactionConfig()
    # Create `directory` (with directory_permissions) when it does not exist, instead of refusing.
    create_directory: bool = False
    directory_permissions: str = "0750"
    recreate: bool = False

    @field_validator("directory_permissions")
    @classmethod
    def _octal(cls, value: str) -> str:
        if not (value.isdigit() and set(value) <= set("01234567") and int(value, 8) <= 0o7777):
            raise ValueError("must be an octal mode such as 0750")
        return value

    def warnings(self) -> list[str]:
        out = []
        if self.compaction.on_start or self.compaction.on_rebound:
            out.append("compaction is ignored: Vigil's queue frees disk space segment by segment as it sends")
        if self.recreate:
            out.append("recreate is ignored: a queue's unreadable records are set aside at start, not the whole store")
        return out


def storage_directory(config: FileStorageConfig, extension_id: str, state_dir: str) -> Path:
    from agent.statefile import safe_name

    if config.directory is not None:
        return Path(config.directory)
    return Path(state_dir) / "file_storage" / safe_name(extension_id)


def queue_directory(directory: Path, exporter_id: str) -> Path:
    from agent.statefile import safe_name

    return directory / f"exporter_{safe_name(exporter_id)}"


class FileStorage:
    def __init__(self, config: FileStorageConfig, settings: Settings) -> None:
        self.directory = storage_directory(config, str(settings.id), str(settings.state_dir))
        self._create = config.create_directory or config.directory is None
        self._mode = int(config.directory_permissions, 8)

    async def start(self) -> None:
        if self._create:
            self.directory.mkdir(mode=self._mode, parents=True, exist_ok=True)
        elif not self.directory.is_dir():
            raise OSError(f"directory {self.directory} does not exist (set create_directory: true to create it)")
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise OSError(f"directory {self.directory} is not writable")

    async def shutdown(self) -> None:
        pass


FACTORY = Factory(Kind.EXTENSION, "file_storage", FileStorageConfig, FileStorage, frozenset(),
                  "a directory for persistent sending queues (sending_queue.storage: file_storage/NAME)")
