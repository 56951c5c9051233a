"""GenAI metrics from `gen_ai.*` spans, as the GenAI semantic conventions define them.

An LLM service instrumented with OpenLLMetry or the OpenTelemetry GenAI
instrumentations sends a span per model call; from those client calls come

- `gen_ai.client.token.usage` (histogram, `{token}`, the conventions' bucket
  bounds), one point per `gen_ai.token.type` (`input`, `output`);
- `gen_ai.client.operation.duration` (histogram, seconds, the conventions'
  bounds), with `error.type` on calls that failed.

vLLM and SGLang send a span per request they serve (`llm_request`, with
`gen_ai.latency.*`); from those server requests, and never as client calls
(`predictions.is_server_call` tells them apart), come

- `gen_ai.server.request.duration` (from `gen_ai.latency.e2e`, with
  `error.type` on requests that failed);
- `gen_ai.server.time_to_first_token` and `gen_ai.server.time_per_output_token`
  ((e2e − ttft) / (completion tokens − 1), for more than one completion
  token), of successful requests only, as the conventions say;
- `ml.server.queue.duration` (`gen_ai.latency.time_in_queue`);

each with the conventions' advised bounds (Vigil's latency bounds for the
queue). All carry `gen_ai.operation.name`, `gen_ai.provider.name`,
`gen_ai.request.model` and `gen_ai.response.model` where the span had them.
Each combination of those (and `error.type`) is one series; at most
`max_series` are kept, client and server together (what comes beyond is
dropped and counted), so cardinality stays bounded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from agent.ml.buckets import DURATION_BOUNDS, GENAI_DURATION_BOUNDS, TOKEN_BOUNDS
from agent.ml.histogram import Histogram
from agent.ml.vocabulary import (
    GENAI_OPERATION, GENAI_PROVIDER, GENAI_REQUEST_MODEL, GENAI_RESPONSE_MODEL, GENAI_SERVER_REQUEST_DURATION_BUCKETS,
    GENAI_SERVER_TIME_PER_OUTPUT_TOKEN_BUCKETS, GENAI_SERVER_TIME_TO_FIRST_TOKEN_BUCKETS,
)

if TYPE_CHECKING:
    from agent.ml.predictions import GenAiCalls

# (service, operation, provider, request model, response model)
Key = tuple[str, str, str, str, str]


@dataclass
class Usage:
    input: Histogram
    output: Histogram


@dataclass
class ServerTimes:
    """A served model's token and queue times (its request durations are kept by error type)."""

    time_to_first_token: Histogram
    time_per_output_token: Histogram
    queue: Histogram

    @classmethod
    def new(cls) -> ServerTimes:
        return cls(Histogram(np.array(GENAI_SERVER_TIME_TO_FIRST_TOKEN_BUCKETS, dtype=float)),
                   Histogram(np.array(GENAI_SERVER_TIME_PER_OUTPUT_TOKEN_BUCKETS, dtype=float)),
                   Histogram(np.array(DURATION_BOUNDS, dtype=float)))


class GenAi:
    def __init__(self, max_series: int) -> None:
        self.max_series = max_series
        self.dropped = 0  # calls not counted: beyond max_series
        self.started_ns = time.time_ns()
        self.tokens: dict[Key, Usage] = {}
        self.durations: dict[tuple[Key, str], Histogram] = {}
        self.server_durations: dict[tuple[Key, str], Histogram] = {}
        self.server_times: dict[Key, ServerTimes] = {}

    def add(self, calls: GenAiCalls) -> None:
        groups: dict[tuple[bool, Key, str], list[int]] = {}
        for row, key in enumerate(zip(calls.operation, calls.provider, calls.request_model, calls.response_model,
                                      calls.error_type, calls.server)):
            groups.setdefault((key[5], (calls.service_name, *key[:4]), key[4]), []).append(row)
        durations = np.array(calls.duration)
        for (server, key, error), rows in groups.items():
            series = self.server_durations if server else self.durations
            duration = series.get((key, error))
            if duration is None:
                if len(self.durations) + len(self.server_durations) >= self.max_series:
                    self.dropped += len(rows)
                    continue
                bounds = GENAI_SERVER_REQUEST_DURATION_BUCKETS if server else GENAI_DURATION_BOUNDS
                duration = series[(key, error)] = Histogram(np.array(bounds, dtype=float))
            index = np.array(rows)
            duration.add(durations[index])
            if server:
                self._server_times(key, error, calls, index, durations[index])
            else:
                self._tokens(key, calls, index)

    def _tokens(self, key: Key, calls: GenAiCalls, index: np.ndarray) -> None:
        usage = self.tokens.get(key)
        if usage is None:
            bounds = np.array(TOKEN_BOUNDS, dtype=float)
            usage = self.tokens[key] = Usage(Histogram(bounds), Histogram(bounds))
        usage.input.add(np.array(calls.input_tokens)[index])
        usage.output.add(np.array(calls.output_tokens)[index])

    def _server_times(self, key: Key, error: str, calls: GenAiCalls, index: np.ndarray, e2e: np.ndarray) -> None:
        times = self.server_times.get(key)
        if times is None:
            times = self.server_times[key] = ServerTimes.new()
        times.queue.add(np.array(calls.time_in_queue)[index])
        if error:
            return  # time to first token and per output token are of successful responses
        ttft = np.array(calls.time_to_first_token)[index]
        times.time_to_first_token.add(ttft)
        tokens = np.array(calls.output_tokens)[index]
        more = (tokens > 1) & (e2e >= ttft)  # NaN (not reported) compares False
        times.time_per_output_token.add((e2e[more] - ttft[more]) / (tokens[more] - 1))

    def take(self) -> GenAi:
        """What was counted since the last take (delta); counting starts afresh."""
        done = GenAi(self.max_series)
        done.started_ns, done.tokens, done.durations = self.started_ns, self.tokens, self.durations
        done.server_durations, done.server_times = self.server_durations, self.server_times
        self.started_ns, self.tokens, self.durations = time.time_ns(), {}, {}
        self.server_durations, self.server_times = {}, {}
        return done

    @property
    def empty(self) -> bool:
        return not self.durations and not self.server_durations


def attributes(key: Key) -> dict[str, str]:
    _, operation, provider, request_model, response_model = key
    # The current name of each (the vocabulary lists older ones after it).
    names = ((GENAI_OPERATION[0], operation), (GENAI_PROVIDER[0], provider),
             (GENAI_REQUEST_MODEL[0], request_model), (GENAI_RESPONSE_MODEL[0], response_model))
    return {name: value for name, value in names if value}
