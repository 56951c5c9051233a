"""A raw HTTP/2 client that starts gRPC calls and sends only part of each message, then stalls.

No gRPC client can do that (a message is sent whole or not at all), and it is
what a broken or hostile sender does to a gRPC server: the server holds what
it received of each message until the rest comes. The client speaks just
enough HTTP/2 (RFC 9113) for that: the preface, SETTINGS and their ACKs,
HEADERS with literal HPACK fields (RFC 7541 6.2.2, no Huffman), DATA within
the flow-control windows the server grants, PING answers; it notes
RST_STREAM and GOAWAY.
"""

from __future__ import annotations

import asyncio
import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7, 0x8
END_HEADERS, ACK = 0x4, 0x1
INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE = 0x4, 0x5


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _literal(name: str, value: str) -> bytes:
    def string(text: str) -> bytes:
        data = text.encode()
        assert len(data) < 127  # a one-byte length, and no Huffman coding
        return bytes([len(data)]) + data

    return b"\x00" + string(name) + string(value)  # literal field without indexing, new name


class StallingClient:
    """One HTTP/2 connection on which `start_calls` opens gRPC calls that each send `sent` bytes of a
    message declared `declared` bytes long, and then nothing more."""

    def __init__(self, host: str, port: int, method: str) -> None:
        self.host, self.port, self.method = host, port, method
        self.connection_window = 65_535
        self.initial_window = 65_535
        self.max_frame = 16_384
        self.windows: dict[int, int] = {}
        self.reset: set[int] = set()
        self.goaway = False
        self.closed = False
        self._granted = asyncio.Event()

    async def connect(self) -> StallingClient:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(PREFACE + frame(SETTINGS, 0, 0))
        self._reading = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        try:
            while True:
                head = await self.reader.readexactly(9)
                length = int.from_bytes(head[:3], "big")
                kind, flags, stream = head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
                payload = await self.reader.readexactly(length)
                if kind == SETTINGS and not flags & ACK:
                    for i in range(0, len(payload), 6):
                        key, value = struct.unpack(">HI", payload[i:i + 6])
                        if key == INITIAL_WINDOW_SIZE:
                            for s in self.windows:
                                self.windows[s] += value - self.initial_window
                            self.initial_window = value
                        elif key == MAX_FRAME_SIZE:
                            self.max_frame = value
                    self.writer.write(frame(SETTINGS, ACK, 0))
                elif kind == WINDOW_UPDATE:
                    increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
                    if stream == 0:
                        self.connection_window += increment
                    elif stream in self.windows:
                        self.windows[stream] += increment
                elif kind == PING and not flags & ACK:
                    self.writer.write(frame(PING, ACK, 0, payload))
                elif kind == RST_STREAM:
                    self.reset.add(stream)
                elif kind == GOAWAY:
                    self.goaway = True
                self._granted.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed = True
            self._granted.set()

    async def start_calls(self, calls: int, declared: int, sent: int, patience: float = 5.0) -> int:
        """Open `calls` streams and send each `sent` bytes of its message, as the windows allow; returns
        the bytes sent in all, once no window has opened for `patience` seconds (or all were sent)."""
        streams = [1 + 2 * i for i in range(calls)]
        headers = b"".join(_literal(k, v) for k, v in [
            (":method", "POST"), (":scheme", "http"), (":path", self.method),
            (":authority", f"{self.host}:{self.port}"), ("content-type", "application/grpc"), ("te", "trailers")])
        todo = {}
        for stream in streams:
            self.windows[stream] = self.initial_window
            self.writer.write(frame(HEADERS, END_HEADERS, stream, headers))
            todo[stream] = b"\x00" + struct.pack(">I", declared) + b"\x0a" * (sent - 5)
        total = 0
        while todo and not self.closed:
            progressed = False
            for stream in list(todo):
                if stream in self.reset:
                    del todo[stream]
                    continue
                size = min(len(todo[stream]), self.windows[stream], self.connection_window, self.max_frame)
                if size <= 0:
                    continue
                chunk, todo[stream] = todo[stream][:size], todo[stream][size:]
                self.writer.write(frame(DATA, 0, stream, chunk))
                self.windows[stream] -= size
                self.connection_window -= size
                total += size
                progressed = True
                if not todo[stream]:
                    del todo[stream]
            await self.writer.drain()
            if not progressed:
                self._granted.clear()
                try:
                    await asyncio.wait_for(self._granted.wait(), patience)
                except TimeoutError:
                    break
        return total

    async def close(self) -> None:
        self._reading.cancel()
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass
