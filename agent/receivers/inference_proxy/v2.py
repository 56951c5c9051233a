"""An Open Inference Protocol (V2) call as prediction spans: one per row, through the shared payload reader.

The model and version come from the path (`/v2/models/{name}[/versions/{v}]/infer`);
`agent.receivers.payloads` reads the inputs as features (or an embedding) and
the outputs as label, score or probabilities. Each span lasts the upstream
call; a status >= 400 marks them failed (`error.type` = the status code), with
the features the request carried.
"""

from __future__ import annotations

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from agent.receivers.inference_proxy.exchange import Exchange, json_body
from agent.receivers.inference_proxy.observer import NotObservable
from agent.receivers.inference_proxy.tracecontext import parent
from agent.receivers.payloads import PayloadConfig, PayloadError, prediction_spans, v2_rows

def spans(exchange: Exchange, config: PayloadConfig, service_name: str) -> list[Span]:
    """One span per row of the call; raises NotObservable when its request or response is not readable."""
    if exchange.content_encoding not in ("", "identity"):
        raise NotObservable("encoded")
    if exchange.streamed:  # a response of unknown length that outgrew the limit, or a V2 stream
        raise NotObservable("too_large" if exchange.cut else "streamed")
    request = json_body(exchange.request_body)
    failed = exchange.error_type is not None
    response = None if failed else json_body(exchange.response_body)
    if not isinstance(request, dict) or (not failed and not isinstance(response, dict)):
        raise NotObservable("malformed")
    route = exchange.route
    try:
        rows = v2_rows(request, response, model=route.model, version=route.version or "", config=config)
    except PayloadError as exc:
        raise NotObservable(exc.reason) from None
    end_ns = exchange.start_ns + round((exchange.ended - exchange.started) * 1e9)
    message = prediction_spans(rows, start_ns=exchange.start_ns, end_ns=end_ns, service_name=service_name,
                               error_type=exchange.error_type)
    trace_id, parent_id = parent(exchange.traceparent)
    out = [span for rs in message.resource_spans for ss in rs.scope_spans for span in ss.spans]
    for span in out:
        span.trace_id, span.parent_span_id = trace_id, parent_id
    return out
