"""GenAI client metrics from `gen_ai.*` spans, as the GenAI semantic conventions define them.

An LLM service instrumented with OpenLLMetry or the OpenTelemetry GenAI
instrumentations sends a span per model call; from those spans come

- `gen_ai.client.token.usage` (histogram, `{token}`, the conventions' bucket
  bounds), one point per `gen_ai.token.type` (`input`, `output`);
- `gen_ai.client.operation.duration` (histogram, seconds, the conventions'
  bounds), with `error.type` on calls that failed;

both with `gen_ai.operation.name`, `gen_ai.provider.name`,
`gen_ai.request.model` and `gen_ai.response.model` where the span had them.
Each combination of those is one series; at most `max_series` are kept (what
comes beyond is dropped and counted) so cardinality stays bounded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from agent.ml.buckets import GENAI_DURATION_BOUNDS, TOKEN_BOUNDS
from agent.ml.histogram import Histogram
from agent.ml.vocabulary import GENAI_OPERATION, GENAI_PROVIDER, GENAI_REQUEST_MODEL, GENAI_RESPONSE_MODEL

if TYPE_CHECKING:
    from agent.ml.predictions import GenAiCalls

# (service, operation, provider, request model, response model)
Key = tuple[str, str, str, str, str]


@dataclass
class Usage:
    input: Histogram
    output: Histogram


class GenAi:
    def __init__(self, max_series: int) -> None:
        self.max_series = max_series
        self.dropped = 0  # calls not counted: beyond max_series
        self.started_ns = time.time_ns()
        self.tokens: dict[Key, Usage] = {}
        self.durations: dict[tuple[Key, str], Histogram] = {}

    def add(self, calls: GenAiCalls) -> None:
        groups: dict[tuple[Key, str], list[int]] = {}
        for row, key in enumerate(zip(calls.operation, calls.provider, calls.request_model, calls.response_model,
                                      calls.error_type)):
            groups.setdefault(((calls.service_name, *key[:4]), key[4]), []).append(row)
        input_tokens, output_tokens = np.array(calls.input_tokens), np.array(calls.output_tokens)
        durations = np.array(calls.duration)
        for (key, error), rows in groups.items():
            duration = self.durations.get((key, error))
            if duration is None:
                if len(self.durations) >= self.max_series:
                    self.dropped += len(rows)
                    continue
                duration = self.durations[(key, error)] = Histogram(np.array(GENAI_DURATION_BOUNDS, dtype=float))
            index = np.array(rows)
            duration.add(durations[index])
            usage = self.tokens.get(key)
            if usage is None:
                bounds = np.array(TOKEN_BOUNDS, dtype=float)
                usage = self.tokens[key] = Usage(Histogram(bounds), Histogram(bounds))
            usage.input.add(input_tokens[index])
            usage.output.add(output_tokens[index])

    def take(self) -> GenAi:
        """What was counted since the last take (delta); counting starts afresh."""
        done = GenAi(self.max_series)
        done.started_ns, done.tokens, done.durations, done.dropped = self.started_ns, self.tokens, self.durations, 0
        self.started_ns, self.tokens, self.durations = time.time_ns(), {}, {}
        return done

    @property
    def empty(self) -> bool:
        return not self.durations


def attributes(key: Key) -> dict[str, str]:
    _, operation, provider, request_model, response_model = key
    # The current name of each (the vocabulary lists older ones after it).
    names = ((GENAI_OPERATION[0], operation), (GENAI_PROVIDER[0], provider),
             (GENAI_REQUEST_MODEL[0], request_model), (GENAI_RESPONSE_MODEL[0], response_model))
    return {name: value for name, value in names if value}
