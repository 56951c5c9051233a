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


def gpu_scrape(view: latest.Latest, gpus: dict[str, int], utilization: float = 0.5) -> None:
    """One nvml scrape of `gpus` (hw.id -> index) as the scraper builds it."""
    from agent.metrics_builder import MetricsBuilder
    from agent.receivers.nvml.scraper import UTILIZATION

    out = MetricsBuilder()
    for device, index in gpus.items():
        out.resource({"hw.id": device, "hw.gpu.index": index}).record(UTILIZATION, utilization,
                                                                     {"hw.gpu.task": "general"})
    view.observe(out.batch().message)


def test_gpus_are_listed_by_their_index_as_a_number():
    view = latest.Latest()
    gpu_scrape(view, {f"GPU-{i}": i for i in (10, 2, 1, 0)})
    assert [g["index"] for g in view.status()["gpus"]] == [0, 1, 2, 10]


def test_a_gpu_gone_from_the_scrapes_is_forgotten_and_a_new_one_takes_its_place():
    from agent.metrics_builder import MetricsBuilder
    from agent.receivers.hostmetrics.system import CPU_UTILIZATION

    view = latest.Latest()
    gpu_scrape(view, {"GPU-a": 0, "GPU-b": 1}, utilization=0.9)
    # GPU 1 repartitioned into MIG instances: new ids from now on.
    for turn in range(latest.STALE_SCRAPES):
        gpus = view.status()["gpus"]
        assert "GPU-b" in [g["id"] for g in gpus], turn  # missed fewer scrapes than the limit: still shown
        gpu_scrape(view, {"GPU-a": 0, "MIG-1": 1, "MIG-2": 1})
        host = MetricsBuilder()
        host.resource({}).record(CPU_UTILIZATION, 0.9, {"cpu.mode": "idle", "cpu": "cpu0"})
        view.observe(host.batch().message)  # the host's values say nothing about the GPUs
    gpus = view.status()["gpus"]
    assert [g["id"] for g in gpus] == ["GPU-a", "MIG-1", "MIG-2"]
    assert gpus[0]["history"]["utilization"][0] == 0.9 and gpus[1]["history"]["utilization"] == [0.5] * 3


def test_when_the_bound_is_reached_new_gpus_get_in_once_the_old_are_gone():
    view = latest.Latest()
    old = {f"GPU-old-{i}": i for i in range(latest.MAX_GPUS)}
    new = {f"GPU-new-{i}": i for i in range(4)}
    gpu_scrape(view, old)
    for _ in range(latest.STALE_SCRAPES + 1):
        gpu_scrape(view, new)
    assert sorted(g["id"] for g in view.status()["gpus"]) == sorted(new)
