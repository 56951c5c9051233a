"""A stand-in OpenAI-compatible chat server (aiohttp, 127.0.0.1, port 0) for the real `openai` client.

No real OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp) runs on a CPU test machine within the test
time, so this one answers `POST /v1/chat/completions` as the OpenAI API reference describes: a whole
response with `usage`, or with `stream: true` server-sent events, one chunk per word, a final chunk with
the finish reason, a usage chunk when `stream_options.include_usage` is set, then `data: [DONE]`. An unknown
model is answered 404 with OpenAI's error body. Tokens are whitespace-separated words, so a test knows them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator

from aiohttp import web

MODEL = "tiny-chat"
REPLY = ("Vigil", "watches", "every", "token")
WORD_DELAY = 0.02  # seconds between streamed words, so the time to first token is below the whole duration


def prompt_tokens(body: dict[str, Any]) -> int:
    return sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))


def usage(body: dict[str, Any]) -> dict[str, int]:
    prompt = prompt_tokens(body)
    return {"prompt_tokens": prompt, "completion_tokens": len(REPLY), "total_tokens": prompt + len(REPLY)}


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if body.get("model") != MODEL:
        return web.json_response({"error": {"message": f"The model `{body.get('model')}` does not exist.",
                                            "type": "invalid_request_error", "param": None,
                                            "code": "model_not_found"}}, status=404)
    base = {"id": f"chatcmpl-{time.monotonic_ns()}", "created": int(time.time()), "model": MODEL}
    if not body.get("stream"):
        message = {"role": "assistant", "content": " ".join(REPLY)}
        return web.json_response({**base, "object": "chat.completion", "usage": usage(body), "choices": [
            {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}]})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)

    async def send(choices: list[dict[str, Any]], **more: Any) -> None:
        chunk = {**base, "object": "chat.completion.chunk", "choices": choices, **more}
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

    await send([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    for k, word in enumerate(REPLY):
        await asyncio.sleep(WORD_DELAY)
        await send([{"index": 0, "delta": {"content": word if k == 0 else f" {word}"}, "finish_reason": None}])
    await send([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    if (body.get("stream_options") or {}).get("include_usage"):
        await send([], usage=usage(body))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "test"}]})


@dataclass
class StandIn:
    url: str  # http://127.0.0.1:PORT; the OpenAI base URL is url + "/v1"
    port: int


@contextlib.asynccontextmanager
async def openai_standin() -> AsyncIterator[StandIn]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/v1/models", models)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield StandIn(f"http://127.0.0.1:{port}", port)
    finally:
        await runner.cleanup()
