"""The `predictionlog` receiver itself: polls the tailer, hands the records on, keeps the positions.

A position only moves once the pipelines accepted the lines before it (a
refused batch is read again at the next poll), and positions are kept under
`state_dir`, so a restart resumes where the last run stopped. File I/O, JSON
parsing and building the records run in a worker thread; malformed lines are
counted (`vigil_receiver_malformed_lines`, by reason).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from agent.component import Consumer, Settings
from agent.errors import ConsumerError
from agent.receivers.delivery import Delivery
from agent.receivers.predictionlog.config import PredictionLogReceiverConfig
from agent.receivers.predictionlog.tailer import Tailer
from agent.signals import Batch, Signal
from agent.statefile import safe_name, write_atomic


class PredictionLogReceiver:
    def __init__(self, config: PredictionLogReceiverConfig, settings: Settings,
                 consumers: dict[Signal, Consumer]) -> None:
        self._config = config
        self._delivery = Delivery(settings, consumers)
        self._log = settings.logger
        self._id = str(settings.id)
        self._checkpoint_path = (Path(settings.state_dir) / "predictionlog"
                                 / (safe_name(self._id) + ".json"))
        self._malformed = settings.telemetry.counter("vigil_receiver_malformed_lines",
                                                     "lines of a tailed file that were skipped, by reason")
        self._tailer: Tailer | None = None
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self._saved_positions: list[dict[str, Any]] | None = None
        self._checkpoint_warned = False
        self.malformed_lines = 0
        self.records_accepted = 0

    async def start(self) -> None:
        checkpoint = await asyncio.to_thread(self._load_checkpoint)
        self._tailer = Tailer(self._config, checkpoint, self._log)
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"{self._id}/tail")

    async def shutdown(self) -> None:
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=10)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._tailer is not None:
            await asyncio.to_thread(self._save_checkpoint, self._tailer.positions())
            await asyncio.to_thread(self._tailer.close)
            self._tailer = None

    def status(self) -> dict[str, Any]:
        # From the last commit: the tailer's own list may be changing in the worker thread.
        return {"files": [{"path": p["path"], "offset": p["offset"]} for p in self._saved_positions or []],
                "records_accepted": self.records_accepted, "malformed_lines": self.malformed_lines}

    async def poll_once(self) -> bool:
        """One poll: read what is new, hand it to the pipelines; True when more is waiting."""
        assert self._tailer is not None
        result = await asyncio.to_thread(self._tailer.poll)
        for reason, n in result.malformed.items():
            self._malformed.add(n, {"receiver": self._id, "reason": reason})
            self.malformed_lines += n
        if result.malformed:
            self._log.warning("skipped %d malformed lines (%s)", sum(result.malformed.values()),
                              ", ".join(f"{r}: {n}" for r, n in sorted(result.malformed.items())))
        if result.request is not None:
            batch = Batch(Signal.LOGS, result.request, items=result.records)
            try:
                await self._delivery.deliver(batch, "file")
            except ConsumerError as exc:
                # Not committed: the same lines are read again at the next poll.
                self._log.warning("pipelines refused %d prediction records; retrying: %s", result.records, exc)
                return False
            self.records_accepted += result.records
        # Malformed lines and the progress of files with nothing valid move on too.
        self._tailer.commit(result.progress)
        positions = self._tailer.positions()
        if positions != self._saved_positions:
            await asyncio.to_thread(self._save_checkpoint, positions)
            self._saved_positions = positions
        return result.more

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                more = await self.poll_once()
            except Exception:  # noqa: BLE001 - a bug or an I/O error must not end tailing
                self._log.exception("polling the prediction logs failed")
                more = False
            if more:
                await asyncio.sleep(0)
                continue
            try:
                await asyncio.wait_for(self._stopping.wait(), self._config.poll_interval)
            except TimeoutError:
                pass

    def _load_checkpoint(self) -> list[dict[str, Any]] | None:
        try:
            data = json.loads(self._checkpoint_path.read_text())
            return [e for e in data["files"] if {"dev", "ino", "offset"} <= set(e)]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._log.warning("cannot read the positions in %s (%s); starting as on a first run",
                              self._checkpoint_path, exc)
            return None

    def _save_checkpoint(self, positions: list[dict[str, Any]]) -> None:
        try:
            self._checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self._checkpoint_path, json.dumps({"files": positions}))
        except OSError as exc:
            if not self._checkpoint_warned:
                self._log.warning("cannot keep file positions in %s (%s); a restart will re-read or skip lines",
                                  self._checkpoint_path, exc)
                self._checkpoint_warned = True
