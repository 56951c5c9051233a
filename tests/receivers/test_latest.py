"""The scraping receivers' latest values, for the status page's host panel: the real hostmetrics
scrapers of this machine and GPUs through the fake NVML, read back through the status API."""

from __future__ import annotations

from agent.admin import status as admin_status
from agent.receivers import latest
from tests.conftest import async_wait_for, running_vigil
from tests.receivers.fake_pynvml import GiB, FakeNvml
from tests.receivers.test_nvml import nvml_config, two_gpus


async def test_the_status_has_the_latest_host_and_gpu_values(tmp_path, monkeypatch):
    fake = FakeNvml(two_gpus()).install(monkeypatch)
    config = nvml_config(tmp_path, extra_receivers={"hostmetrics": {
        "collection_interval": "100ms", "initial_delay": "0s", "scrapers": {"cpu": {}, "memory": {}}}})
    async with running_vigil(config) as vigil:
        def receivers() -> dict:
            return admin_status.collect(vigil.service)["components"]["receivers"]

        def ready() -> bool:
            found = receivers()
            host = found["hostmetrics"]["status"]["latest"]["host"]
            gpus = found["nvml"]["status"]["latest"]["gpus"]
            return "cpu_utilization" in host and len(gpus) == 2 and len(gpus[1]["history"]["utilization"]) >= 2

        assert await async_wait_for(ready, timeout=15)
        found = receivers()
    host = found["hostmetrics"]["status"]["latest"]["host"]
    assert 0 <= host["cpu_utilization"] <= 1
    assert 0 < host["memory_used_bytes"] < host["memory_limit_bytes"]
    assert 0 < host["memory_utilization"] < 1
    assert len(host["history"]["cpu_utilization"]) <= latest.HISTORY
    first, second = found["nvml"]["status"]["latest"]["gpus"]
    assert (first["index"], second["index"]) == (0, 1)
    assert second["model"] == "NVIDIA A100-SXM4-40GB"
    assert second["utilization"] == 0.97 and second["temperature_celsius"] == 70
    assert second["power_watts"] == 399.123
    assert second["memory_used_bytes"] == 30 * GiB and second["memory_limit_bytes"] == 40 * GiB
    assert second["memory_utilization"] == 0.75
    assert first["utilization"] == 0.5  # the general task's, not the encoder's or decoder's
    assert fake.refcount == 0


def test_gpus_beyond_the_bound_are_not_kept():
    from agent.metrics_builder import MetricsBuilder
    from agent.receivers.nvml.scraper import UTILIZATION

    view = latest.Latest()
    for turn in range(latest.HISTORY + 5):
        out = MetricsBuilder()
        for i in range(latest.MAX_GPUS + 10):
            out.resource({"hw.id": f"GPU-{i}", "hw.gpu.index": i}).record(UTILIZATION, 0.5,
                                                                         {"hw.gpu.task": "general"})
        view.observe(out.batch().message)
    gpus = view.status()["gpus"]
    assert len(gpus) == latest.MAX_GPUS
    assert all(len(g["history"]["utilization"]) == latest.HISTORY for g in gpus)
