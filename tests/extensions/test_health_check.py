"""The health_check extension: the Collector's answer, on its own port or on the admin endpoint's."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime

import aiohttp
import pytest

from agent import config as config_module
from agent.component import ComponentId, Settings
from agent.extensions.health_check import HealthCheck, HealthCheckConfig, go_duration
from agent.service import Service, StartupError
from agent.telemetry import SelfTelemetry
from tests.conftest import free_port, otlp_receiver_config, running_vigil

GO_DURATION = re.compile(r"^(\d+h)?(\d+m)?\d+(\.\d+)?(s|ms|µs)$")


def _config(health: dict | None = None, admin: str = "127.0.0.1:0") -> dict:
    return {
        "extensions": {"health_check": health or {"endpoint": "127.0.0.1:0"}},
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "exporters": {"debug": {}},
        "service": {"extensions": ["health_check"], "admin": {"endpoint": admin},
                    "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}}},
    }


def _health(vigil) -> HealthCheck:
    return vigil.service.extensions.running[ComponentId("health_check")][1]


async def _get(url: str, **headers: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, response.content_type, await response.text()


async def test_answers_200_with_the_collectors_body_while_the_pipelines_run():
    async with running_vigil(_config()) as vigil:
        status, content_type, text = await _get(f"http://127.0.0.1:{_health(vigil).port}/")
    assert (status, content_type) == (200, "application/json")
    body = json.loads(text)
    assert list(body) == ["status", "upSince", "uptime"]
    assert body["status"] == "Server available"
    assert datetime.fromisoformat(body["upSince"].replace("Z", "+00:00"))
    assert GO_DURATION.match(body["uptime"]), body["uptime"]


async def test_answers_503_before_the_pipelines_run_and_once_shutdown_begins():
    check = HealthCheck(HealthCheckConfig(endpoint="127.0.0.1:0"), Settings(ComponentId("health_check"),
                                                                             SelfTelemetry()))
    await check.start()
    try:
        url = f"http://127.0.0.1:{check.port}/"
        status, _, text = await _get(url)
        assert status == 503
        # Exactly the Collector's unavailable answer (Go's zero time, an empty uptime).
        assert json.loads(text) == {"status": "Server not available", "upSince": "0001-01-01T00:00:00Z",
                                    "uptime": ""}
        check.ready()
        assert (await _get(url))[0] == 200
        check.not_ready()
        assert (await _get(url))[0] == 503
    finally:
        await check.shutdown()


async def test_a_service_shutting_down_answers_503_while_its_exporters_drain():
    async with running_vigil(_config()) as vigil:
        url = f"http://127.0.0.1:{_health(vigil).port}/"
        assert (await _get(url))[0] == 200
        vigil.service.extensions.set_ready(False)  # what Service.shutdown does first
        assert (await _get(url))[0] == 503


async def test_path_and_response_body_as_configured():
    health = {"endpoint": "127.0.0.1:0", "path": "/health/status",
              "response_body": {"healthy": "I'm OK", "unhealthy": "I'm bad"}}
    async with running_vigil(_config(health)) as vigil:
        port = _health(vigil).port
        assert (await _get(f"http://127.0.0.1:{port}/"))[0] == 404
        assert await _get(f"http://127.0.0.1:{port}/health/status") == (200, "text/plain", "I'm OK")


def test_a_path_without_a_leading_slash_is_refused():
    with pytest.raises(config_module.ConfigError) as info:
        config_module.from_dict(_config({"path": "health"}))
    assert info.value.problems == ["extensions.health_check.path: must start with /"]


def test_check_collector_pipeline_is_accepted_with_a_warning():
    config = config_module.from_dict(_config({"endpoint": "127.0.0.1:0", "check_collector_pipeline": {
        "enabled": True, "interval": "5m", "exporter_failure_threshold": 5}}))
    assert any(w.startswith("extensions.health_check: check_collector_pipeline is ignored")
               for w in config.warnings)


async def test_on_the_admin_endpoints_port_the_admin_endpoint_serves_it():
    port = free_port()
    # The Collector's default endpoint is localhost:13133, Vigil's admin default 127.0.0.1:13133:
    # the same clash on a free port.
    config = config_module.from_dict(_config({"endpoint": f"localhost:{port}"}, admin=f"127.0.0.1:{port}"))
    assert (f"extensions.health_check: endpoint localhost:{port} is the admin endpoint's (127.0.0.1:{port}), "
            f"which serves the health check at /") in config.warnings
    service = Service(config)
    await service.start()
    try:
        status, content_type, text = await _get(f"http://127.0.0.1:{port}/")
        assert (status, content_type, json.loads(text)["status"]) == (200, "application/json", "Server available")
        # A browser still gets the status page at /, and the admin's own routes are there.
        status, content_type, _ = await _get(f"http://127.0.0.1:{port}/", Accept="text/html,*/*")
        assert (status, content_type) == (200, "text/html")
        assert (await _get(f"http://127.0.0.1:{port}/-/ready"))[0] == 200
    finally:
        await service.shutdown()


async def test_a_taken_port_stops_the_start_naming_the_extension():
    port = free_port()
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", port)
    try:
        service = Service(config_module.from_dict(_config({"endpoint": f"127.0.0.1:{port}"})))
        with pytest.raises(StartupError, match=r"cannot start extensions\.health_check: .*"):
            await service.start()
        assert service.graph is None
    finally:
        blocker.close()
        await blocker.wait_closed()


async def test_a_reload_that_changes_the_path_serves_the_new_path_on_the_same_port():
    port = free_port()
    async with running_vigil(_config({"endpoint": f"127.0.0.1:{port}"})) as vigil:
        changed = config_module.from_dict(_config({"endpoint": f"127.0.0.1:{port}", "path": "/healthz"}))
        result = await vigil.service.reload(changed)
        assert result["status"] == "reloaded", result
        assert (await _get(f"http://127.0.0.1:{port}/healthz"))[0] == 200
        assert (await _get(f"http://127.0.0.1:{port}/"))[0] == 404


def test_uptime_is_written_as_go_writes_durations():
    assert go_duration(3.25) == "3.25s"
    assert go_duration(0.012) == "12ms"
    assert go_duration(62) == "1m2s"
    assert go_duration(3723.5) == "1h2m3.5s"


async def test_on_every_interface_of_the_admin_endpoints_port_it_answers_beside_it():
    # The Kubernetes form, 0.0.0.0:13133, beside Vigil's admin endpoint on 127.0.0.1:13133: the probe
    # reaches the health check on the host's other addresses (127.0.0.2 stands for one here), where the
    # admin endpoint's page and API are not served; on 127.0.0.1 the admin endpoint answers both.
    port = free_port()
    config = config_module.from_dict(_config({"endpoint": f"0.0.0.0:{port}"}, admin=f"127.0.0.1:{port}"))
    assert (f"extensions.health_check: endpoint 0.0.0.0:{port} shares the admin endpoint's port "
            f"(127.0.0.1:{port}): the health check answers at / on every interface, the admin endpoint's "
            f"page and API only on 127.0.0.1") in config.warnings
    service = Service(config)
    await service.start()
    try:
        for host in ("127.0.0.2", "127.0.0.1"):
            status, content_type, text = await _get(f"http://{host}:{port}/")
            assert (status, content_type) == (200, "application/json"), host
            assert text.startswith('{"status":"Server available","upSince":"'), text  # the Collector's bytes
        assert (await _get(f"http://127.0.0.2:{port}/api/v1/status"))[0] == 404
        assert (await _get(f"http://127.0.0.1:{port}/api/v1/status"))[0] == 200
    finally:
        await service.shutdown()
