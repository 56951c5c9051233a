"""The `memory_limiter` processor: refuse data while the agent uses too much memory, as the Collector does.

Every `check_interval` it measures the process's resident memory (what the
kernel's OOM killer counts). There are two limits: the hard limit `limit_mib`
and the soft limit `limit_mib - spike_limit_mib` (the spike allowance is the
most memory may grow between two checks). At or above the soft limit, every
batch is refused with a retryable error (gRPC UNAVAILABLE, HTTP 503), so the
senders keep their data and retry later, until usage is below the soft limit
again. At or above the hard limit it also collects garbage and hands freed heap
back to the OS on every check (above the soft limit, at most every 10 s),
since a Python process keeps freed memory otherwise.

Put it first in a pipeline, so refused data costs as little as possible.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import time
from pathlib import Path

import psutil
from pydantic import Field, model_validator

from agent.component import Consumer, Factory, Kind, Settings
from agent.configmodel import Duration, StrictModel
from agent.errors import RefusedError
from agent.signals import Batch, Signal

_MIB = 1024 * 1024
# Collecting garbage costs time on the event loop: above the soft limit, not more often than this.
_GC_INTERVAL_SOFT = 10.0


class MemoryLimiterConfig(StrictModel):
    check_interval: Duration = 1.0
    limit_mib: int = Field(0, ge=0)
    spike_limit_mib: int = Field(0, ge=0)  # 0: 20% of the limit
    # Of the host's memory (or the cgroup's limit, if lower); instead of the MiB settings.
    limit_percentage: int = Field(0, ge=0, le=100)
    spike_limit_percentage: int = Field(0, ge=0, le=100)

    @model_validator(mode="after")
    def _check(self) -> MemoryLimiterConfig:
        if self.check_interval <= 0:
            raise ValueError("check_interval must be > 0")
        if bool(self.limit_mib) == bool(self.limit_percentage):
            raise ValueError("set one of limit_mib or limit_percentage")
        if self.limit_mib and self.spike_limit_mib >= self.limit_mib:
            raise ValueError("spike_limit_mib must be less than limit_mib")
        if self.limit_percentage and self.spike_limit_percentage >= self.limit_percentage:
            raise ValueError("spike_limit_percentage must be less than limit_percentage")
        return self

    def limits(self, total: int) -> tuple[int, int]:
        """(soft, hard) limits in bytes, given the memory available to the process."""
        if self.limit_mib:
            hard = self.limit_mib * _MIB
            spike = self.spike_limit_mib * _MIB if self.spike_limit_mib else hard // 5
        else:
            hard = total * self.limit_percentage // 100
            spike = (total * self.spike_limit_percentage // 100 if self.spike_limit_percentage
                     else hard // 5)
        return hard - spike, hard


def available_memory() -> int:
    """The host's memory, or the cgroup's memory limit when that is lower (in a container)."""
    total = psutil.virtual_memory().total
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _malloc_trim():
    """glibc's malloc_trim, which returns freed heap pages to the OS; None elsewhere."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
    return trim


class MemoryLimiter:
    mutates_data = False

    def __init__(self, config: MemoryLimiterConfig, settings: Settings, signal: Signal, next: Consumer,
                 measure=None) -> None:
        self._config = config
        self._next = next
        self._log: logging.Logger = settings.logger
        self._attrs = {"processor": str(settings.id)}
        self._soft, self._hard = config.limits(available_memory())
        self._process = psutil.Process()
        self._measure = measure or (lambda: self._process.memory_info().rss)
        self._trim = _malloc_trim()
        self._refusing = False
        self._last_gc = 0.0
        self._task: asyncio.Task | None = None
        self.usage = 0
        self._refused = settings.telemetry.counter(
            f"vigil_processor_refused_{signal.item_name}", "items refused by a processor (memory_limiter)")

    async def start(self) -> None:
        await self.check()
        self._task = asyncio.create_task(self._watch(), name=f"{self._attrs['processor']}-watch")

    async def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def consume(self, batch: Batch) -> None:
        if self._refusing:
            self._refused.add(batch.items, self._attrs)
            raise RefusedError(f"memory usage {self.usage // _MIB} MiB is above the soft limit of "
                               f"{self._soft // _MIB} MiB (memory_limiter)",
                               retry_after=max(self._config.check_interval, 1.0))
        await self._next.consume(batch)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._config.check_interval)
            try:
                await self.check()
            except Exception:  # noqa: BLE001 - a failed measurement must not stop the watching
                self._log.exception("memory_limiter could not measure memory")

    async def check(self) -> None:
        """Measure; above the limits, give memory back; refuse while at or above the soft limit."""
        self.usage = self._measure()
        now = time.monotonic()
        if self.usage >= self._hard or (self.usage >= self._soft and now - self._last_gc >= _GC_INTERVAL_SOFT):
            self._last_gc = now
            gc.collect()
            if self._trim is not None:
                await asyncio.to_thread(self._trim, 0)
            before, self.usage = self.usage, self._measure()
            self._log.debug("memory_limiter: collected garbage: %d MiB -> %d MiB", before // _MIB,
                            self.usage // _MIB)
        elif self.usage >= self._soft and self._trim is not None:
            # Refused requests are freed at once, but into the heap, which glibc keeps: a trim (cheap,
            # off the loop) gives it back, so the measure follows what is really in use.
            await asyncio.to_thread(self._trim, 0)
            self.usage = self._measure()
        refusing = self.usage >= self._soft
        if refusing and not self._refusing:
            self._log.warning("memory usage %d MiB is above the soft limit of %d MiB (hard limit %d MiB): "
                              "refusing data until it is below", self.usage // _MIB, self._soft // _MIB,
                              self._hard // _MIB)
        elif self._refusing and not refusing:
            self._log.info("memory usage %d MiB is below the soft limit of %d MiB again: accepting data",
                           self.usage // _MIB, self._soft // _MIB)
        self._refusing = refusing


def _create(config: MemoryLimiterConfig, settings: Settings, signal: Signal, next: Consumer) -> MemoryLimiter:
    return MemoryLimiter(config, settings, signal, next)


FACTORY = Factory(
    kind=Kind.PROCESSOR,
    type="memory_limiter",
    config_model=MemoryLimiterConfig,
    create=_create,
    signals=frozenset(Signal),
    description="refuses data (retryably) while the agent's memory is above a soft limit",
)
