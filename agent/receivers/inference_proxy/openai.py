"""An OpenAI-compatible call (/v1/chat/completions, /v1/completions) as a GenAI SERVER span.

The span is named and attributed as vLLM's own `llm_request` span
(vllm-project/vllm@03b8a674 vllm/tracing.py SpanAttributes), so the `ml`
processor turns it into the gen_ai.server.* metrics exactly as it does
vLLM's: `gen_ai.latency.e2e` is the upstream call as the proxy saw it (request
sent to last byte), `gen_ai.latency.time_to_first_token` the arrival of the
first chunk carrying generated text (streams only), the token counts come from
the response's `usage` or the stream's final usage chunk (a stream without one
counts no tokens: nothing is guessed from the chunks). An HTTP status >= 400
is `error.type` (the status code, as the HTTP conventions write it) with the
span's status ERROR; so is an `error` event inside a stream.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from agent.attributes import set_any_value
from agent.ml.vocabulary import (ERROR_TYPE, GENAI_INPUT_TOKENS, GENAI_LATENCY_E2E, GENAI_LATENCY_TTFT,
                                 GENAI_OPERATION, GENAI_OUTPUT_TOKENS, GENAI_REQUEST_MODEL, GENAI_RESPONSE_MODEL,
                                 MAX_STRING_LENGTH, OTHER_ERROR, PROXY_FINISH_REASONS, PROXY_REQUEST_PARAMETERS,
                                 PROXY_RESPONSE_ID)
from agent.receivers.inference_proxy.exchange import Exchange, json_body
from agent.receivers.inference_proxy.observer import NotObservable
from agent.receivers.inference_proxy.tracecontext import parent

SPAN_NAME = "llm_request"  # vLLM's
# vLLM's names for the token counts (the vocabulary lists the conventions' first, then these).
_PROMPT_TOKENS = GENAI_INPUT_TOKENS[1]
_COMPLETION_TOKENS = GENAI_OUTPUT_TOKENS[1]


def spans(exchange: Exchange, server: dict[str, Any]) -> list[Span]:
    """The call's span; raises NotObservable when its request (or a successful response) is not readable."""
    if exchange.content_encoding not in ("", "identity"):
        raise NotObservable("encoded")
    request = json_body(exchange.request_body)
    if not isinstance(request, dict):
        raise NotObservable("malformed")
    attributes: dict[str, Any] = {GENAI_OPERATION[0]: exchange.route.operation, **server}
    _text(attributes, GENAI_REQUEST_MODEL[0], request.get("model"))
    for parameter, name in PROXY_REQUEST_PARAMETERS.items():
        value = request.get(parameter)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            attributes[name] = value
    error: str | None = None
    first_token: float | None = None
    if exchange.error_type is not None:
        error = exchange.error_type
    elif exchange.streamed:
        found = _read_stream(exchange)
        first_token, error = found.first_token, found.error
        _response(attributes, found.model, found.id, found.usage, found.finish_reasons)
    else:
        response = json_body(exchange.response_body)
        if not isinstance(response, dict):
            raise NotObservable("malformed")
        _response(attributes, response.get("model"), response.get("id"), response.get("usage"),
                  _finish_reasons(response.get("choices")))
    attributes[GENAI_LATENCY_E2E] = exchange.ended - exchange.started
    if first_token is not None:
        attributes[GENAI_LATENCY_TTFT] = first_token - exchange.started
    span = Span(name=SPAN_NAME, kind=Span.SPAN_KIND_SERVER, span_id=os.urandom(8),
                start_time_unix_nano=exchange.start_ns,
                end_time_unix_nano=exchange.start_ns + round((exchange.ended - exchange.started) * 1e9))
    span.trace_id, span.parent_span_id = parent(exchange.traceparent)
    if error is not None:
        attributes[ERROR_TYPE] = error
        span.status.code = Status.STATUS_CODE_ERROR
    for key, value in attributes.items():
        set_any_value(span.attributes.add(key=key).value, value)
    return [span]


class _Stream:
    __slots__ = ("model", "id", "usage", "finish_reasons", "first_token", "error")

    def __init__(self) -> None:
        self.model: Any = None
        self.id: Any = None
        self.usage: Any = None
        self.finish_reasons: list[str] = []
        self.first_token: float | None = None
        self.error: str | None = None


def _read_stream(exchange: Exchange) -> _Stream:
    """What the SSE stream's events say; each event timed by the chunk that completed it."""
    found = _Stream()
    readable = _read_events(exchange.chunks, found, strict=True)
    if exchange.tail is not None:  # past the limit: the tail starts mid-event, its first piece is dropped
        readable += _read_events(exchange.tail, found, strict=False)
    if not readable:
        raise NotObservable("malformed")
    return found


def _read_events(chunks, found: _Stream, strict: bool) -> int:
    pending = b""
    readable = 0
    for arrived, chunk in chunks:
        pending += chunk
        *events, pending = pending.replace(b"\r\n", b"\n").split(b"\n\n")
        for event in events:
            data = b"\n".join(line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:"))
            if not data or data == b"[DONE]":
                continue
            payload = json_body(data)
            if not isinstance(payload, dict):
                if strict:
                    raise NotObservable("malformed")
                continue
            readable += 1
            _read_event(payload, arrived, found)
    return readable


def _read_event(payload: dict, arrived: float, found: _Stream) -> None:
    if "error" in payload:
        problem = payload["error"]
        kind = problem.get("type") if isinstance(problem, dict) else None
        found.error = kind[:MAX_STRING_LENGTH] if isinstance(kind, str) and kind else OTHER_ERROR
        return
    found.model = payload.get("model", found.model)
    found.id = payload.get("id", found.id)
    if isinstance(payload.get("usage"), dict):
        found.usage = payload["usage"]
    choices = payload.get("choices")
    if not isinstance(choices, list):
        return
    found.finish_reasons.extend(_finish_reasons(choices))
    if found.first_token is None and any(_generated(choice) for choice in choices):
        found.first_token = arrived


def _generated(choice: Any) -> bool:
    """Whether a stream chunk's choice carries generated output (not just the role)."""
    if not isinstance(choice, dict):
        return False
    if choice.get("text"):  # /v1/completions
        return True
    delta = choice.get("delta")
    return isinstance(delta, dict) and any(delta.get(k) for k in ("content", "reasoning_content", "tool_calls"))


def _finish_reasons(choices: Any) -> list[str]:
    if not isinstance(choices, list):
        return []
    return [c["finish_reason"][:MAX_STRING_LENGTH] for c in choices
            if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)]


def _response(attributes: dict[str, Any], model: Any, response_id: Any, usage: Any,
              finish_reasons: list[str]) -> None:
    _text(attributes, GENAI_RESPONSE_MODEL[0], model)
    _text(attributes, PROXY_RESPONSE_ID, response_id)
    if finish_reasons:
        attributes[PROXY_FINISH_REASONS] = finish_reasons
    if isinstance(usage, dict):
        for field, name in (("prompt_tokens", _PROMPT_TOKENS), ("completion_tokens", _COMPLETION_TOKENS)):
            value = usage.get(field)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                attributes[name] = value


def _text(attributes: dict[str, Any], name: str, value: Any) -> None:
    if isinstance(value, str) and value:
        attributes[name] = value[:MAX_STRING_LENGTH]
