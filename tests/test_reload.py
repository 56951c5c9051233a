"""Reload (agent/service.py, agent/pipeline.py): what is unchanged keeps its state, what changed is
swapped without dropping accepted data, and a bad config leaves the running graph alone."""

from __future__ import annotations

import asyncio
import copy
import socket

import aiohttp

import grpc
import pytest

from agent import config as config_module
from agent.component import ComponentId
from agent.signals import Signal
from tests.conftest import async_wait_for, free_port, otlp_receiver_config, read_json_lines, running_vigil
from tests.otlp_data import send_grpc, traces

OTLP = ComponentId("otlp")


def span_names(path) -> list[str]:
    return [span["name"] for line in read_json_lines(path) for rs in line["resourceSpans"]
            for ss in rs["scopeSpans"] for span in ss["spans"]]


def base(tmp_path, batch: dict | None = None, exporter: str = "a.json") -> dict:
    return {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        # A sender waits until its items leave the batch: a second here, or the flush of a shutdown.
        # idle_timeout 0: the batch processor holds what it gets until its timeout, for the reload to keep.
        "processors": {"batch": batch or {"timeout": "1500ms", "send_batch_size": 100000, "idle_timeout": "0s"}},
        "exporters": {"file": {"path": str(tmp_path / exporter)}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"],
                                             "exporters": ["file"]}},
                    "admin": {"endpoint": "127.0.0.1:0"}},
    }


def parsed(config: dict):
    return config_module.from_dict(copy.deepcopy(config), "<test>")


async def test_an_unchanged_config_keeps_every_component_and_what_it_holds(tmp_path):
    config = base(tmp_path)
    async with running_vigil(config) as vigil:
        before = vigil.service.graph
        components = before.components()
        # The batch processor holds the spans (and their sender waits) until its timeout or a flush.
        sending = asyncio.create_task(send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(3), timeout=30))
        await asyncio.sleep(0.3)
        result = await vigil.service.reload(parsed(config))
        assert result["status"] == "reloaded"
        assert result["kept"] == len(components) and result["started"] == result["stopped"] == 0
        after = vigil.service.graph.components()
        assert all(after[node] is component for node, component in components.items())
        assert not sending.done() and span_names(tmp_path / "a.json") == []
        await sending  # answered once the kept batch processor sent it on
    assert span_names(tmp_path / "a.json") == ["span-0", "span-1", "span-2"]


async def test_a_changed_exporter_is_swapped_behind_the_kept_batch_processor(tmp_path):
    async with running_vigil(base(tmp_path)) as vigil:
        receiver = vigil.receiver()
        port = receiver.grpc_port
        batch = vigil.service.graph.pipelines[ComponentId("traces")].processors[0][1]
        first = asyncio.create_task(send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(2), timeout=30))
        await asyncio.sleep(0.3)
        result = await vigil.service.reload(parsed(base(tmp_path, exporter="b.json")))
        assert result == {"status": "reloaded", "problems": [], "kept": 2, "started": 1, "stopped": 1,
                          "replaced": 1}
        # The receiver never stopped listening, and the batch processor kept what it held ...
        assert vigil.receiver() is receiver and receiver.grpc_port == port
        assert vigil.service.graph.pipelines[ComponentId("traces")].processors[0][1] is batch
        assert not first.done()
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(1, start=2), timeout=30)
        await first
    # ... which went, with what came after the reload, to the new exporter.
    assert span_names(tmp_path / "a.json") == []
    assert span_names(tmp_path / "b.json") == ["span-0", "span-1", "span-2"]


async def test_a_changed_processor_flushes_what_it_holds_before_it_goes(tmp_path):
    async with running_vigil(base(tmp_path)) as vigil:
        first = asyncio.create_task(send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(2), timeout=30))
        await asyncio.sleep(0.3)
        result = await vigil.service.reload(parsed(base(tmp_path, batch={"timeout": "2s", "idle_timeout": "0s"})))
        assert result["status"] == "reloaded" and result["replaced"] == 1
        # The old batch processor was shut down, so its two spans went out at the reload, not a second later.
        await asyncio.wait_for(first, 0.5)
        assert span_names(tmp_path / "a.json") == ["span-0", "span-1"]
        second = asyncio.create_task(send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(1, start=2),
                                               timeout=30))
        await asyncio.sleep(0.3)
        assert span_names(tmp_path / "a.json") == ["span-0", "span-1"]  # held by the new one
        await second
    assert span_names(tmp_path / "a.json") == ["span-0", "span-1", "span-2"]


async def test_an_invalid_config_is_refused_and_the_running_graph_kept(tmp_path, caplog):
    config = base(tmp_path, batch={"timeout": "10ms"})
    (tmp_path / "vigil.yaml").write_text("receivers: {otlp: {protocols: {grpc: {endpoint: nowhere}}}}\n")
    async with running_vigil(config) as vigil:
        vigil.service.config.source = str(tmp_path / "vigil.yaml")  # what a reload reads
        graph = vigil.service.graph
        result = await vigil.service.reload()
        assert result["status"] == "invalid"
        assert "receivers.otlp.protocols.grpc.endpoint" in result["problems"][0]
        assert "service: required field is missing" in result["problems"][0]
        assert vigil.service.graph is graph and vigil.service.ready
        assert "the new config is invalid; still running the previous one" in caplog.text
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(1))
    assert span_names(tmp_path / "a.json") == ["span-0"]


async def test_a_new_component_that_cannot_start_abandons_the_reload(tmp_path):
    (tmp_path / "not-a-dir").write_text("")
    bad = base(tmp_path, exporter="not-a-dir/b.json")
    async with running_vigil(base(tmp_path, batch={"timeout": "10ms"})) as vigil:
        graph = vigil.service.graph
        result = await vigil.service.reload(parsed(bad))
        assert result["status"] == "failed"
        assert result["problems"][0].startswith("cannot start exporters.file: ")
        assert vigil.service.graph is graph and vigil.service.ready
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(1))
    assert span_names(tmp_path / "a.json") == ["span-0"]


async def test_a_changed_receiver_is_restarted_on_its_port(tmp_path):
    config = base(tmp_path, batch={"timeout": "10ms"})
    async with running_vigil(config) as vigil:
        old = vigil.receiver()
        port = old.grpc_port
        changed = copy.deepcopy(config)
        changed["receivers"]["otlp"] = {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{port}",
                                                               "max_recv_msg_size_mib": 8}}}
        result = await vigil.service.reload(parsed(changed))
        assert result["status"] == "reloaded" and result["replaced"] == 1
        assert vigil.receiver() is not old and vigil.receiver().grpc_port == port
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(1))
    assert span_names(tmp_path / "a.json") == ["span-0"]


def held_port():
    """A listening socket on 127.0.0.1, as another process holding a port would be."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


async def test_a_reload_whose_new_receiver_cannot_bind_is_abandoned_and_the_old_one_serves(tmp_path):
    config = base(tmp_path, batch={"timeout": "10ms"})
    grpc_port = free_port()
    config["receivers"]["otlp"] = {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"}}}
    with held_port() as holder:
        taken = holder.getsockname()[1]
        changed = base(tmp_path, batch={"timeout": "10ms"}, exporter="b.json")
        changed["receivers"]["otlp"] = {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                                                      "http": {"endpoint": f"127.0.0.1:{taken}"}}}
        async with running_vigil(config) as vigil:
            graph, components = vigil.service.graph, vigil.service.graph.components()
            result = await vigil.service.reload(parsed(changed))
            assert result["status"] == "failed"
            assert result["problems"][0].startswith("cannot start receivers.otlp: ")
            assert str(taken) in result["problems"][0]
            # The old graph runs on, its exporter and batch as they were, its receiver back on its port.
            assert vigil.service.graph is graph and vigil.service.ready and not vigil.service.problems
            after = graph.components()
            assert all(after[n] is c for n, c in components.items() if n[0] != "receivers")
            assert vigil.receiver().grpc_port == grpc_port
            await send_grpc(f"127.0.0.1:{grpc_port}", Signal.TRACES, traces(1))
            # The same config once the port is free.
            holder.close()
            assert (await vigil.service.reload(parsed(changed)))["status"] == "reloaded"
            await send_grpc(f"127.0.0.1:{grpc_port}", Signal.TRACES, traces(1, prefix="new"))
    assert span_names(tmp_path / "a.json") == ["span-0"]
    assert span_names(tmp_path / "b.json") == ["new-0"]


async def test_an_abandoned_reload_brings_back_a_receiver_it_removed(tmp_path):
    """A reload renaming `otlp` to `otlp/2` on a held port: `otlp` comes back, and its self-telemetry
    counts on as one receiver."""
    config = base(tmp_path, batch={"timeout": "10ms"})
    grpc_port = free_port()
    config["receivers"]["otlp"] = {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"}}}
    with held_port() as holder:
        changed = copy.deepcopy(config)
        changed["receivers"] = {"otlp/2": {"protocols": {"grpc": {
            "endpoint": f"127.0.0.1:{holder.getsockname()[1]}"}}}}
        changed["service"]["pipelines"]["traces"]["receivers"] = ["otlp/2"]
        async with running_vigil(config) as vigil:
            await send_grpc(f"127.0.0.1:{grpc_port}", Signal.TRACES, traces(2))
            result = await vigil.service.reload(parsed(changed))
            assert result["status"] == "failed" and "receivers.otlp/2" in result["problems"][0]
            assert list(vigil.service.graph.receivers) == [OTLP] and vigil.service.ready
            await send_grpc(f"127.0.0.1:{grpc_port}", Signal.TRACES, traces(3, start=2))
            assert vigil.counter("vigil_receiver_accepted_spans", receiver="otlp") == 5


async def test_an_admin_endpoint_that_cannot_move_fails_the_reload_and_stays(tmp_path):
    config = base(tmp_path)
    with held_port() as holder:
        changed = copy.deepcopy(config)
        changed["service"]["admin"] = {"endpoint": f"127.0.0.1:{holder.getsockname()[1]}"}
        async with running_vigil(config) as vigil:
            admin, graph = vigil.service.admin, vigil.service.graph
            result = await vigil.service.reload(parsed(changed))
            assert result["status"] == "failed"
            assert result["problems"][0].startswith(f"cannot start the admin endpoint on "
                                                    f"127.0.0.1:{holder.getsockname()[1]}")
            await asyncio.sleep(0.3)
            assert vigil.service.admin is admin and vigil.service.graph is graph and vigil.service.ready
            async with aiohttp.ClientSession() as session, session.get(vigil.admin_url("/-/ready")) as response:
                assert response.status == 200


async def test_an_admin_endpoint_moves_to_a_new_port_and_onto_its_own_port(tmp_path):
    config = base(tmp_path)
    async with running_vigil(config) as vigil, aiohttp.ClientSession() as session:
        old_port = vigil.service.admin.port
        new_port = free_port()
        moved = copy.deepcopy(config)
        moved["service"]["admin"] = {"endpoint": f"127.0.0.1:{new_port}"}
        assert (await vigil.service.reload(parsed(moved)))["status"] == "reloaded"
        assert await async_wait_for(lambda: getattr(vigil.service.admin, "port", None) == new_port)
        async with session.get(f"http://127.0.0.1:{new_port}/-/ready") as response:
            assert response.status == 200
        # Onto the port it has, under another spelling: it cannot listen beside itself, so it moves after.
        same = copy.deepcopy(config)
        same["service"]["admin"] = {"endpoint": f"localhost:{new_port}"}
        assert (await vigil.service.reload(parsed(same)))["status"] == "reloaded"
        assert await async_wait_for(lambda: vigil.service.admin is not None
                                    and vigil.service.admin._endpoint == f"localhost:{new_port}")
        async with session.get(f"http://127.0.0.1:{new_port}/-/ready") as response:
            assert response.status == 200
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(f"http://127.0.0.1:{old_port}/-/ready"):
                pass


async def test_nothing_accepted_is_lost_while_reloads_swap_the_exporter(tmp_path):
    """Spans sent without pause while the exporter is swapped back and forth all arrive somewhere."""
    configs = [base(tmp_path, batch={"timeout": "10ms"}, exporter=name) for name in ("a.json", "b.json")]
    accepted: list[str] = []
    async with running_vigil(configs[0]) as vigil:
        endpoint = vigil.grpc_endpoint()
        stop = asyncio.Event()

        async def send() -> None:
            k = 0
            while not stop.is_set():
                try:
                    await send_grpc(endpoint, Signal.TRACES, traces(5, start=k))
                except grpc.aio.AioRpcError:
                    pass  # refused: the sender keeps it (none expected, but not a loss either)
                else:
                    accepted.extend(f"span-{i}" for i in range(k, k + 5))
                k += 5

        sender = asyncio.create_task(send())
        for i in range(6):
            await asyncio.sleep(0.05)
            assert (await vigil.service.reload(parsed(configs[(i + 1) % 2])))["status"] == "reloaded"
        stop.set()
        await sender
    delivered = span_names(tmp_path / "a.json") + span_names(tmp_path / "b.json")
    assert len(accepted) > 50
    assert sorted(delivered) == sorted(accepted)


async def test_the_ml_engine_and_its_windows_survive_a_reload_that_does_not_touch_it(tmp_path):
    config = {
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "processors": {"ml": {"reference": {"warmup": 10}, "window": {"size": 1000, "min_size": 10}}},
        "exporters": {"file": {"path": str(tmp_path / "a.json")}, "file/metrics": {"path": str(tmp_path / "m.json")}},
        "service": {"state_dir": str(tmp_path / "state"), "admin": {"endpoint": "127.0.0.1:0"},
                    "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["ml"], "exporters": ["file"]},
                                  "metrics": {"receivers": ["ml"], "exporters": ["file/metrics"]}}},
    }
    async with running_vigil(config) as vigil:
        engine = vigil.service.graph.shared[ComponentId("ml")]
        await send_grpc(vigil.grpc_endpoint(), Signal.TRACES, traces(30))
        before = engine.status()["models"][0]
        assert before["requests"] == 30
        changed = copy.deepcopy(config)
        changed["exporters"]["file"]["path"] = str(tmp_path / "b.json")
        assert (await vigil.service.reload(parsed(changed)))["status"] == "reloaded"
        assert vigil.service.graph.shared[ComponentId("ml")] is engine
        assert engine.status()["models"][0]["requests"] == 30
        # A change to its own config makes a new engine.
        changed["processors"]["ml"]["window"]["size"] = 500
        assert (await vigil.service.reload(parsed(changed)))["status"] == "reloaded"
        assert vigil.service.graph.shared[ComponentId("ml")] is not engine


@pytest.mark.parametrize("signals", [("traces",), ("traces", "logs")])
async def test_a_receiver_feeding_other_signals_is_replaced(tmp_path, signals):
    config = base(tmp_path)
    async with running_vigil(config) as vigil:
        old = vigil.receiver()
        changed = copy.deepcopy(config)
        for s in signals:
            changed["service"]["pipelines"][s] = {"receivers": ["otlp"], "exporters": ["file"]}
        await vigil.service.reload(parsed(changed))
        assert (vigil.receiver() is old) == (signals == ("traces",))


async def test_a_changed_prometheus_exporter_takes_over_its_port_and_gives_it_back_if_the_reload_fails(tmp_path):
    """A listener that replaces one of the same id on the same port starts once that one stopped."""
    port = free_port()
    config = {"receivers": {"otlp": otlp_receiver_config(http=False)},
              "exporters": {"prometheus": {"endpoint": f"127.0.0.1:{port}"}},
              "service": {"pipelines": {"metrics": {"receivers": ["otlp"], "exporters": ["prometheus"]}},
                          "admin": {"endpoint": "127.0.0.1:0"}}}
    renamed = copy.deepcopy(config)
    renamed["exporters"]["prometheus"]["namespace"] = "renamed"
    async with running_vigil(config) as vigil, aiohttp.ClientSession() as session:
        old = vigil.service.graph.exporters[ComponentId("prometheus")]
        with held_port() as holder:
            failing = copy.deepcopy(renamed)
            failing["receivers"]["otlp"] = {"protocols": {"grpc": {
                "endpoint": f"127.0.0.1:{holder.getsockname()[1]}"}}}
            result = await vigil.service.reload(parsed(failing))
            assert result["status"] == "failed" and "receivers.otlp" in result["problems"][0]
        assert vigil.service.graph.exporters[ComponentId("prometheus")] is old and vigil.service.ready
        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200

        result = await vigil.service.reload(parsed(renamed))
        assert result["status"] == "reloaded" and result["replaced"] == 1, result
        assert vigil.service.graph.exporters[ComponentId("prometheus")].port == port
        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200
