"""State-changing admin requests a browser was made to send from another site are refused
(agent/admin/origin.py); what `vigil`, curl and scripts send passes."""

from __future__ import annotations

import aiohttp
import pytest

from agent.admin.origin import refusal
from tests.conftest import otlp_receiver_config, running_vigil

HOST = {"Host": "127.0.0.1:13133"}


@pytest.mark.parametrize("method, headers", [
    ("POST", {}),  # curl -X POST, urllib: no browser marks at all
    ("POST", {"Content-Type": "application/json"}),  # vigil alerts silence
    ("DELETE", {"Content-Type": "application/json", "Accept": "application/json"}),
    ("POST", {"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:13133"}),
    ("POST", {"Sec-Fetch-Site": "none"}),  # typed by the user
    ("POST", {"Origin": "http://localhost:13133", "Host": "localhost:13133"}),
    ("POST", {"Origin": "http://[::1]:13133", "Host": "[::1]:13133"}),
    ("GET", {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}),  # reads change nothing
    ("OPTIONS", {"Origin": "http://evil.example"}),
])
def test_what_passes(method, headers):
    assert refusal(method, {**HOST, **headers}, "127.0.0.1") is None


@pytest.mark.parametrize("method, headers, why", [
    ("POST", {"Origin": "http://evil.example"}, "Origin: http://evil.example"),
    ("POST", {"Origin": "null"}, "Origin: null"),  # a sandboxed frame, a redirect across sites
    ("POST", {"Origin": "http://127.0.0.1:8080"}, "Origin: http://127.0.0.1:8080"),  # another local port
    ("POST", {"Origin": "https://127.0.0.1:13133"}, None),  # a scheme is not a port: same host:port passes
    ("PUT", {"Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site: cross-site"),
    ("DELETE", {"Sec-Fetch-Site": "same-site"}, "Sec-Fetch-Site: same-site"),
    ("POST", {"Content-Type": "application/x-www-form-urlencoded"}, "form's content type"),
    ("POST", {"Content-Type": "multipart/form-data; boundary=x"}, "multipart/form-data"),
    ("POST", {"Content-Type": "Text/Plain;charset=UTF-8"}, "text/plain"),
    # DNS rebinding: a page on evil.example, whose name now resolves to 127.0.0.1, is same-origin.
    ("POST", {"Origin": "http://evil.example:13133", "Host": "evil.example:13133",
              "Sec-Fetch-Site": "same-origin"}, "host name 'evil.example:13133'"),
])
def test_what_is_refused(method, headers, why):
    reason = refusal(method, {**HOST, **headers}, "127.0.0.1")
    if why is None:
        assert reason is None
    else:
        assert reason is not None and why in reason


def test_the_configured_host_name_is_trusted():
    headers = {"Origin": "http://vigil.internal:13133", "Host": "vigil.internal:13133"}
    assert refusal("POST", headers, "vigil.internal") is None
    assert refusal("POST", headers, "0.0.0.0") is not None


def config(tmp_path) -> dict:
    return {"receivers": {"otlp": otlp_receiver_config(http=False)},
            "processors": {"alerts": {"rules": [{"name": "Up", "metric": "up", "op": ">", "threshold": 0}]}},
            "exporters": {"file": {"path": str(tmp_path / "out.json")}},
            "service": {"state_dir": str(tmp_path / "state"),
                        "pipelines": {"metrics": {"receivers": ["otlp"], "processors": ["alerts"],
                                                  "exporters": ["file"]}}}}


async def test_the_admin_endpoint_refuses_cross_site_reloads_and_silences_and_counts_them(tmp_path, caplog):
    async with running_vigil(config(tmp_path)) as vigil, aiohttp.ClientSession() as session:
        silence = {"matchers": ['alertname="Up"'], "duration": "1h"}
        for path, kwargs in [
            ("/-/reload", {"headers": {"Origin": "http://evil.example"}}),
            ("/-/reload", {"data": "x=1", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}),
            ("/-/reload", {"headers": {"Sec-Fetch-Site": "cross-site"}}),
            ("/api/v1/alerts/silences", {"json": silence, "headers": {"Origin": "http://evil.example"}}),
            ("/api/v1/alerts/silences", {"data": '{"matchers": ["alertname=\\"Up\\""], "duration": "1h"}',
                                         "headers": {"Content-Type": "text/plain"}}),
        ]:
            async with session.post(vigil.admin_url(path), **kwargs) as response:
                assert response.status == 403, (path, kwargs)
                assert (await response.json())["error"].startswith("refused: ")
        assert vigil.service.last_reload is None
        engine = next(iter(vigil.service.graph.shared.values()))
        assert engine.silences.all() == []
        assert vigil.counter("vigil_admin_refused_requests") == 5
        # One log line for the lot, not one per request.
        assert caplog.text.count("state-changing admin request(s) sent from another site") == 1

        async with session.post(vigil.admin_url("/api/v1/alerts/silences"), json=silence) as response:
            assert response.status == 201
        async with session.get(vigil.admin_url("/api/v1/status"),
                               headers={"Origin": "http://evil.example"}) as response:
            assert response.status == 200
