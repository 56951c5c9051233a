"""Local stand-ins for the servers the proxy sits before: aiohttp servers on 127.0.0.1:0.

No OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp) or Triton runs on
this CPU-only test machine, so these speak their HTTP APIs as documented: the
OpenAI chat and completions APIs with SSE streaming (`data: {json}` events,
`data: [DONE]`, the final usage chunk only with
`stream_options.include_usage`, as OpenAI and vLLM send it), and the Open
Inference Protocol's /v2/models/{name}[/versions/{v}]/infer. Besides, `/echo`
answers with what it received, `/slow` waits, `/big` sends a large body,
`/v1/broken/...` breaks off a stream.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web


class Upstream:
    """A running stand-in; `requests` holds (method, raw path and query, headers, body) of every call it got."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.stream_gate: asyncio.Event | None = None  # when set, a stream waits on it after its first chunk
        self.stream_ended = asyncio.Event()  # a stream's handler finished (written out, or its client gone)
        self.stream_aborted = False  # the last stream's client went away before the end
        self.slow_seconds = 0.0
        self.token_delay = 0.0
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post(r"/v2/models/{name}/infer", self._infer)
        app.router.add_post(r"/v2/models/{name}/versions/{version}/infer", self._infer)
        app.router.add_route("*", "/echo", self._echo)
        app.router.add_route("*", "/slow", self._slow)
        app.router.add_get("/big", self._big)
        app.router.add_post("/v1/broken/chat/completions", self._broken)
        self._runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _record(self, request: web.Request) -> bytes:
        body = await request.read()
        self.requests.append((request.method, request.raw_path, dict(request.headers), body))
        return body

    async def _echo(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        return web.Response(body=body, headers={"X-Echo-Method": request.method, "X-Echo-Path": request.path_qs,
                                                "X-Upstream": "stand-in", "Set-Cookie": "a=1"},
                            content_type=request.content_type or "application/octet-stream")

    async def _slow(self, request: web.Request) -> web.Response:
        await self._record(request)
        await asyncio.sleep(self.slow_seconds)
        return web.Response(text="late")

    async def _big(self, request: web.Request) -> web.Response:
        size = int(request.query["size"])
        return web.Response(body=b"x" * size)

    async def _broken(self, request: web.Request) -> web.StreamResponse:
        """Half a stream, then the connection dropped: a server that crashed mid-generation."""
        await self._record(request)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"choices": [{"index": 0, "delta": {"content": "Hel"}}]}\n\n')
        request.transport.close()
        return response

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        body = await self._record(request)
        try:
            call = json.loads(body)
        except ValueError:
            return web.json_response({"error": {"message": "invalid JSON", "type": "BadRequestError",
                                                "code": 400}}, status=400)
        model = call.get("model", "")
        if model == "missing":
            return web.json_response({"error": {"message": "model not found", "type": "NotFoundError",
                                                "code": 404}}, status=404)
        words = ["Hello", " there", ",", " friend", "."][: call.get("max_tokens", 5)]
        prompt_tokens = 7
        kind = "chat.completion" if chat else "text_completion"
        if not call.get("stream"):
            choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
            if chat:
                choice["message"] = {"role": "assistant", "content": "".join(words)}
            else:
                choice["text"] = "".join(words)
            return web.json_response({"id": "cmpl-1", "object": kind, "model": model + "-served",
                                      "choices": [choice],
                                      "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                                                "total_tokens": prompt_tokens + len(words)}})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        chunk_kind = "chat.completion.chunk" if chat else "text_completion"

        async def send(payload: dict[str, Any]) -> None:
            await response.write(b"data: " + json.dumps(payload).encode() + b"\n\n")

        try:
            if chat:  # the role first, with no content, as OpenAI and vLLM send it
                await send({"id": "cmpl-1", "object": chunk_kind, "model": model + "-served",
                            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
            for i, word in enumerate(words):
                if i == 1 and self.stream_gate is not None:
                    await self.stream_gate.wait()
                if self.token_delay:
                    await asyncio.sleep(self.token_delay)
                last = i == len(words) - 1
                choice = {"index": 0, "finish_reason": "length" if last else None}
                choice.update({"delta": {"content": word}} if chat else {"text": word})
                await send({"id": "cmpl-1", "object": chunk_kind, "model": model + "-served", "choices": [choice]})
            if (call.get("stream_options") or {}).get("include_usage"):
                await send({"id": "cmpl-1", "object": chunk_kind, "model": model + "-served", "choices": [],
                            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                                      "total_tokens": prompt_tokens + len(words)}})
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            self.stream_aborted = False
        except ConnectionError:
            self.stream_aborted = True
        finally:
            self.stream_ended.set()
        return response

    async def _infer(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        try:
            call = json.loads(body)
        except ValueError:
            return web.json_response({"error": "invalid JSON"}, status=400)
        if request.match_info["name"] == "missing":
            return web.json_response({"error": "Request for unknown model: 'missing' is not found"}, status=400)
        tensor = call["inputs"][0]
        rows = tensor["shape"][0]
        data = tensor["data"]
        width = len(data) // rows
        scores = [min(1.0, max(0.0, sum(data[r * width:(r + 1) * width]) / (10 * width))) for r in range(rows)]
        return web.json_response({
            "model_name": request.match_info["name"], "model_version": request.match_info.get("version", "1"),
            "id": call.get("id", ""),
            "outputs": [{"name": "score", "datatype": "FP32", "shape": [rows], "data": scores}]})


async def started() -> Upstream:
    upstream = Upstream()
    await upstream.start()
    return upstream
