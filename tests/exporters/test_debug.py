"""The `debug` exporter: a summary line per batch, or the whole batch at `detailed`."""

from __future__ import annotations

import logging

import pytest

from agent import otlp_json
from agent.signals import Signal
from tests.conftest import otlp_receiver_config, running_vigil
from tests.otlp_data import send_grpc, traces


def config(verbosity: str) -> dict:
    return {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "exporters": {"debug": {"verbosity": verbosity}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}}},
    }


@pytest.mark.parametrize("verbosity", ["basic", "normal"])
async def test_basic_logs_one_summary_line_per_batch(caplog, verbosity):
    caplog.set_level(logging.INFO, logger="vigil.exporters.debug")
    async with running_vigil(config(verbosity)) as vigil:
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(3, resources=2))
    lines = [r.getMessage() for r in caplog.records if r.name == "vigil.exporters.debug"]
    assert lines == ["traces: resources=2 spans=6"]


async def test_detailed_logs_the_batch_as_otlp_json(caplog):
    caplog.set_level(logging.INFO, logger="vigil.exporters.debug")
    sent = traces(2)
    async with running_vigil(config("detailed")) as vigil:
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, sent)
    lines = [r.getMessage() for r in caplog.records if r.name == "vigil.exporters.debug"]
    assert lines[0] == "traces: resources=1 spans=2"
    assert otlp_json.decode(Signal.TRACES, lines[1]) == sent
