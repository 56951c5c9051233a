"""What both front ends of the `otlp` receiver do with an Export request once its body is in.

A request takes one of `max_concurrent_requests` slots, its body is decoded
(decompressed, OTLP/JSON read into wire bytes, checked, attribute limits
applied) and the batch is delivered; the outcome is counted. Bodies over
64 KiB that take Python work to decode (JSON, attribute limits,
decompression) are decoded on a small pool of threads, so that one large
request never holds up the event loop's other work.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping

from agent import otlp_json_reader
from agent.component import Consumer, Settings
from agent.errors import ConsumerError, RefusedError
from agent.receivers.delivery import Delivery
from agent.receivers.intake import decompress
from agent.receivers.limits import AttributeLimits
from agent.receivers.otlp.config import OtlpReceiverConfig
from agent.signals import Batch, Signal

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# Bodies up to this size are decoded on the event loop (a thread hop would cost more than they do).
_DECODE_INLINE = 64 * 1024
# Decodes of larger bodies at once: each holds its text and the bytes it writes, about twice the body.
_DECODE_THREADS = 2
_MAX_MESSAGE = 512  # characters of an error message sent back


class ProtectionCounters:
    """What the receiver's protections refused or cut, beyond the accepted and refused items."""

    def __init__(self, settings: Settings) -> None:
        self._id = str(settings.id)
        t = settings.telemetry
        self._dropped_attributes = t.counter("vigil_receiver_dropped_attributes",
                                             "attributes dropped over max_attributes")
        self._truncated_values = t.counter("vigil_receiver_truncated_values",
                                           "attribute values cut to max_attribute_value_length or "
                                           "max_array_length")
        self._unauthenticated = t.counter("vigil_receiver_unauthenticated_requests",
                                          "requests refused for a missing or wrong bearer token")
        self._too_many = t.counter("vigil_receiver_refused_requests_concurrency",
                                   "requests refused over max_concurrent_requests")

    def limited(self, dropped: int, truncated: int) -> None:
        if dropped:
            self._dropped_attributes.add(dropped, {"receiver": self._id})
        if truncated:
            self._truncated_values.add(truncated, {"receiver": self._id})

    def unauthenticated(self, transport: str) -> None:
        self._unauthenticated.add(1, {"receiver": self._id, "transport": transport})

    def too_many(self, transport: str) -> None:
        self._too_many.add(1, {"receiver": self._id, "transport": transport})


class ExportHandler:
    """The receiver's request handling, shared by its front ends: slots, decoding, delivery, counts."""

    def __init__(self, config: OtlpReceiverConfig, settings: Settings,
                 consumers: Mapping[Signal, Consumer]) -> None:
        self.signals = list(consumers)
        self.counters = ProtectionCounters(settings)
        self._id = str(settings.id)
        self._delivery = Delivery(settings, consumers)
        self._log = settings.logger
        self._limits = AttributeLimits(config.limits)
        self._max_in_flight = config.limits.max_concurrent_requests
        self._in_flight = 0
        self._decoders: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._decoders = ThreadPoolExecutor(_DECODE_THREADS, thread_name_prefix=f"{self._id}-decode")

    def close(self) -> None:
        if self._decoders is not None:
            self._decoders.shutdown(wait=False, cancel_futures=True)
            self._decoders = None

    def admit(self) -> bool:
        """Take a slot for one request, unless max_concurrent_requests are being handled."""
        if self._max_in_flight and self._in_flight >= self._max_in_flight:
            return False
        self._in_flight += 1
        return True

    def release(self) -> None:
        """Give back the slot `admit` took."""
        self._in_flight -= 1

    def refused(self, signal: Signal, transport: str) -> None:
        """Count a request whose body did not decode."""
        self._delivery.refused(signal, transport, 0)

    def _prepare(self, batch: Batch) -> Batch:
        """Apply the limits to `batch`, just checked on its wire bytes.

        A request the limits left alone goes on as its bytes and item count, without the parsed
        message: parsed, a request takes about four times its size, for as long as its sender waits
        (ten 300 KiB requests held 12 MiB). A processor that reads it parses it again.
        """
        wire = batch.wire()
        if self._limits.enabled:
            dropped, truncated = self._limits.apply(batch)
            self.counters.limited(dropped, truncated)
            if dropped or truncated:
                return batch
        return Batch(batch.signal, wire=wire, items=batch.items)

    def _decode(self, signal: Signal, body: bytes, content_type: str = PROTOBUF, encoding: str = "",
                max_size: int = 0) -> Batch:
        """The batch a request body holds: decompressed, read (OTLP/JSON into wire bytes), checked and
        limited. Raises `TooLarge`, `DecodeError` or `ValueError` (JsonDecodeError) for a bad body."""
        body = decompress(body, encoding, max_size)
        if content_type == JSON:
            body = otlp_json_reader.read(signal, body)
        return self._prepare(Batch.from_wire(signal, body))

    async def decode(self, signal: Signal, body: bytes, content_type: str = PROTOBUF,
                     encoding: str = "", max_size: int = 0) -> Batch:
        """`_decode`, on a decoding thread where a large body takes Python work: OTLP/JSON, attribute
        limits, or inflating it (zlib lets go of the GIL). A protobuf body is checked where it is, in
        C and at gigabytes a second: a thread hop would cost it more than the check.

        The JSON reader is Python and holds the GIL in slices, so the event loop keeps its turn
        (sys.getswitchinterval, 5 ms) while a large body is read; a thread per decode would not bound
        memory, so decodes beyond the pool's threads wait their turn.
        """
        args = (signal, body, content_type, encoding, max_size)
        python_work = content_type == JSON or encoding or self._limits.enabled
        if len(body) <= _DECODE_INLINE or not python_work or self._decoders is None:
            return self._decode(*args)
        return await asyncio.get_running_loop().run_in_executor(self._decoders, self._decode, *args)

    async def deliver(self, batch: Batch, transport: str) -> None:
        """Hand `batch` to the pipelines, counted; raises a ConsumerError for the sender's answer."""
        try:
            await self._delivery.deliver(batch, transport)
        except ConsumerError:
            raise
        except Exception:
            self._log.exception("pipeline failed on a %s batch; answered as retryable", batch.signal.value)
            raise RefusedError("internal error in the pipeline") from None


def short(message: str) -> str:
    """`message` cut to what an error answer carries."""
    return message if len(message) <= _MAX_MESSAGE else message[:_MAX_MESSAGE - 3] + "..."
