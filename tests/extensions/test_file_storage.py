"""file_storage: `sending_queue.storage: file_storage/NAME` keeps an exporter's queue under its directory.

The exporter is the real `otlp` one, its backend a real gRPC server (tests/exporters/backends.py),
the data sent through Vigil's own OTLP receiver; the restart is a real stop and start of the service.
"""

from __future__ import annotations

import grpc
import pytest

from agent import config as config_module
from agent.component import ComponentId, Kind
from agent.signals import Signal
from tests.conftest import async_wait_for, free_port, otlp_receiver_config, running_vigil
from tests.exporters.backends import GrpcReply, grpc_backend
from tests.otlp_data import item_names, send_span_batches


def _config(directory, backend: str, extension: dict | None = None, listed: bool = True,
            storage: str = "file_storage/queues") -> dict:
    return {
        "extensions": {"file_storage/queues": extension if extension is not None else {"directory": str(directory)}},
        "receivers": {"otlp": otlp_receiver_config(http=False)},
        "exporters": {"otlp": {"endpoint": backend, "tls": {"insecure": True}, "timeout": "1s",
                               "sending_queue": {"storage": storage},
                               "retry_on_failure": {"initial_interval": "50ms", "max_interval": "200ms"}}},
        "service": {"extensions": ["file_storage/queues"] if listed else [],
                    "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp"]}}},
    }


def _delivered(backend) -> list[str]:
    return sorted(n for c in backend.ok_calls() for n in item_names(Signal.TRACES, c.message))


async def test_the_queue_lives_under_the_extensions_directory_and_survives_a_restart(tmp_path):
    directory = tmp_path / "storage"
    directory.mkdir()
    port = free_port()
    async with grpc_backend(port) as backend:
        backend.default = GrpcReply(code=grpc.StatusCode.UNAVAILABLE, message="down for maintenance")
        async with running_vigil(_config(directory, f"127.0.0.1:{port}")) as vigil:
            await send_span_batches(vigil.grpc_endpoint(), batches=10, spans=3)
            assert await async_wait_for(lambda: backend.attempts() >= 1)
        assert not backend.ok_calls()
        assert (directory / "exporter_otlp").is_dir()  # the Collector's naming: exporter_<id>

        backend.default = GrpcReply()
        async with running_vigil(_config(directory, f"127.0.0.1:{port}")):
            assert await async_wait_for(lambda: len(_delivered(backend)) >= 30, timeout=15)
    # Every accepted span arrives, once.
    assert _delivered(backend) == sorted(f"span-{i}" for i in range(30))


def test_fsync_follows_the_extension():
    raw = _config("/tmp", "127.0.0.1:4317", {"directory": "/tmp", "fsync": True})
    config = config_module.from_dict(raw)
    storage = config.component(Kind.EXPORTER, ComponentId("otlp")).config.sending_queue.storage
    assert (storage.directory, storage.fsync) == ("/tmp/exporter_otlp", "always")
    raw["extensions"]["file_storage/queues"]["fsync"] = False
    storage = config_module.from_dict(raw).component(Kind.EXPORTER, ComponentId("otlp")).config.sending_queue.storage
    assert storage.fsync == "interval"


def test_without_a_directory_it_lives_under_the_state_dir(tmp_path):
    raw = _config(None, "127.0.0.1:4317", {})
    raw["service"]["state_dir"] = str(tmp_path)
    config = config_module.from_dict(raw)
    storage = config.component(Kind.EXPORTER, ComponentId("otlp")).config.sending_queue.storage
    assert storage.directory == str(tmp_path / "file_storage" / "file_storage%2Fqueues" / "exporter_otlp")


@pytest.mark.parametrize(("change", "problem"), [
    ({"storage": "file_storage/other"},
     "exporters.otlp.sending_queue.storage: extension 'file_storage/other' is not defined in extensions "
     "(or has errors above)"),
    ({"listed": False},
     "exporters.otlp.sending_queue.storage: extension 'file_storage/queues' is not enabled: add it to "
     "service.extensions"),
    ({"extension": {"directory": "/nonexistent/vigil-storage"}},
     "extensions.file_storage/queues.directory: /nonexistent/vigil-storage does not exist (create it, or set "
     "create_directory: true)"),
])
def test_a_storage_that_cannot_hold_the_queue_is_named_at_validate(change, problem):
    with pytest.raises(config_module.ConfigError) as info:
        config_module.from_dict(_config("/tmp", "127.0.0.1:4317", **change))
    assert info.value.problems == [problem]


def test_a_storage_that_is_not_a_file_storage_is_refused():
    raw = _config("/tmp", "127.0.0.1:4317", storage="health_check")
    raw["extensions"]["health_check"] = {"endpoint": "127.0.0.1:0"}
    raw["service"]["extensions"].append("health_check")
    with pytest.raises(config_module.ConfigError) as info:
        config_module.from_dict(raw)
    assert info.value.problems == ["exporters.otlp.sending_queue.storage: extension 'health_check' is not a "
                                   "storage: use a file_storage extension"]


async def test_create_directory_makes_it_at_start(tmp_path):
    directory = tmp_path / "made" / "here"
    raw = _config(directory, f"127.0.0.1:{free_port()}", {"directory": str(directory), "create_directory": True})
    async with running_vigil(raw):
        assert directory.is_dir()


def test_compaction_is_accepted_with_a_warning():
    config = config_module.from_dict(_config("/tmp", "127.0.0.1:4317", {"directory": "/tmp", "compaction": {
        "on_start": True, "directory": "/tmp", "max_transaction_size": 65536}}))
    assert ("extensions.file_storage/queues: compaction is ignored: Vigil's queue frees disk space segment "
            "by segment as it sends") in config.warnings
