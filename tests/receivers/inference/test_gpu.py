"""GPU use per inference server: the NVML fake (`tests/receivers/fake_pynvml.py`, no GPU here) reporting the
pids of real processes, joined to "servers" that are real process trees (a server and its worker child).

The same join on a real GPU: tools/gpu_check.sh.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

import pynvml
import pytest

from agent.receivers.inference.gpu import GpuAttribution, GpuUse
from tests.receivers.fake_pynvml import GiB, FakeGpu, FakeNvml, mig_device

MiB = 1 << 20
A, B = "127.0.0.1:8000", "127.0.0.1:8002"

# A server that starts one worker (as vLLM starts its engine core) and prints the worker's pid.
SERVER = ("import subprocess, sys\n"
          "worker = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'], stdin=subprocess.PIPE)\n"
          "print(worker.pid, flush=True)\n"
          "sys.stdin.read()\n")


class Tree:
    def __init__(self, server: subprocess.Popen, worker: int) -> None:
        self.server, self.pid, self.worker = server, server.pid, worker


@pytest.fixture
def trees():
    started: list[subprocess.Popen] = []

    def start() -> Tree:
        server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, start_new_session=True)
        started.append(server)
        return Tree(server, int(server.stdout.readline()))

    yield start
    for server in started:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)
        server.stdout.close()
        server.stdin.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def attribution(**kwargs) -> GpuAttribution:
    return GpuAttribution(logging.getLogger("test.gpu"), **kwargs)


def test_memory_and_utilisation_of_a_servers_workers_are_the_servers(monkeypatch, trees):
    a, b = trees(), trees()
    gpu0 = FakeGpu("GPU-0", compute_processes=[(a.worker, 30 * GiB), (1, 1 * GiB)],
                   process_samples=[(a.worker, 10, 40), (a.worker, 20, 60), (1, 20, 10)])
    gpu1 = FakeGpu("GPU-1", compute_processes=[(b.pid, 2 * GiB), (b.worker, 3 * GiB)],
                   graphics_processes=[(b.pid, 2 * GiB)], process_samples=[(b.pid, 15, 20), (b.worker, 15, 30)])
    FakeNvml([gpu0, gpu1]).install(monkeypatch)
    use = attribution().sample({a.pid: A, b.pid: B})
    # pid 1 is no server's: its memory and SM time are nobody's.
    assert use[A] == GpuUse(30 * GiB, 0.5, None, ("GPU-0",))
    # b's own process is in both lists (counted once) and its worker adds to it.
    assert use[B] == GpuUse(5 * GiB, 0.5, None, ("GPU-1",))


def test_utilisation_counts_only_the_samples_since_the_last_sample(monkeypatch, trees):
    a = trees()
    gpu = FakeGpu("GPU-0", compute_processes=[(a.worker, GiB)], process_samples=[(a.worker, 100, 80)])
    nvml = FakeNvml([gpu]).install(monkeypatch)
    gpus = attribution()
    assert gpus.sample({a.pid: A})[A].utilization == 0.8
    # NVML has nothing newer (NOT_FOUND): the server did no work on it since.
    assert gpus.sample({a.pid: A})[A].utilization == 0.0
    gpu.process_samples.append((a.worker, 200, 30))
    assert gpus.sample({a.pid: A})[A].utilization == 0.3
    assert nvml.unexpected == []


def test_a_gpu_without_per_process_utilisation_gives_memory_and_is_not_asked_again(monkeypatch, trees, caplog):
    a = trees()
    gpu = FakeGpu("GPU-0", compute_processes=[(a.worker, GiB)],
                  unsupported={"nvmlDeviceGetProcessUtilization", "nvmlDeviceGetTotalEnergyConsumption"})
    nvml = FakeNvml([gpu]).install(monkeypatch)
    gpus = attribution()
    with caplog.at_level(logging.INFO, logger="test.gpu"):
        assert gpus.sample({a.pid: A}) == {A: GpuUse(GiB, None, None, ("GPU-0",))}
        assert gpus.sample({a.pid: A}) == {A: GpuUse(GiB, None, None, ("GPU-0",))}
    assert nvml.count("nvmlDeviceGetProcessUtilization", gpu) == 1
    [said] = [r.getMessage() for r in caplog.records if "does not support" in r.getMessage()]
    assert "process_utilization" in said and "energy" in said


def test_energy_since_the_last_sample_goes_to_the_server_that_owns_the_gpu(monkeypatch, trees):
    a = trees()
    gpu = FakeGpu("GPU-0", compute_processes=[(a.pid, GiB), (a.worker, GiB)], energy_mj=1_000_000)
    FakeNvml([gpu]).install(monkeypatch)
    gpus = attribution()
    assert gpus.sample({a.pid: A})[A].energy_joules is None  # nothing to compare with yet
    gpu.energy_mj += 2_500
    assert gpus.sample({a.pid: A})[A].energy_joules == 2.5
    gpu.energy_mj += 40_000
    assert gpus.sample({a.pid: A})[A].energy_joules == 40.0


def test_no_energy_for_a_gpu_another_process_uses_or_that_changed_hands(monkeypatch, trees):
    a, b = trees(), trees()
    gpu = FakeGpu("GPU-0", compute_processes=[(a.worker, GiB), (1, GiB)], energy_mj=1_000_000)
    FakeNvml([gpu]).install(monkeypatch)
    gpus = attribution()
    gpus.sample({a.pid: A, b.pid: B})
    gpu.energy_mj += 1_000
    assert gpus.sample({a.pid: A, b.pid: B})[A].energy_joules is None  # pid 1 shares the GPU
    gpu.compute_processes = [(b.worker, GiB)]  # a left, b came: b owns it from now on
    gpu.energy_mj += 1_000
    assert gpus.sample({a.pid: A, b.pid: B}) == {B: GpuUse(GiB, 0.0, None, ("GPU-0",))}
    gpu.energy_mj += 1_000
    assert gpus.sample({a.pid: A, b.pid: B})[B].energy_joules == 1.0


def test_no_energy_for_a_server_that_owns_only_some_of_its_gpus(monkeypatch, trees):
    a = trees()
    owned = FakeGpu("GPU-0", compute_processes=[(a.worker, GiB)], energy_mj=1_000)
    shared = FakeGpu("GPU-1", compute_processes=[(a.pid, GiB), (1, GiB)], energy_mj=1_000)
    FakeNvml([owned, shared]).install(monkeypatch)
    gpus = attribution()
    gpus.sample({a.pid: A})
    owned.energy_mj += 1_000
    shared.energy_mj += 1_000
    assert gpus.sample({a.pid: A})[A] == GpuUse(2 * GiB, 0.0, None, ("GPU-0", "GPU-1"))


def test_energy_of_a_server_on_two_gpus_it_owns_is_their_sum(monkeypatch, trees):
    a = trees()
    gpu0 = FakeGpu("GPU-0", compute_processes=[(a.worker, GiB)], energy_mj=1_000)
    gpu1 = FakeGpu("GPU-1", compute_processes=[(a.pid, GiB)], energy_mj=5_000)
    FakeNvml([gpu0, gpu1]).install(monkeypatch)
    gpus = attribution()
    gpus.sample({a.pid: A})
    gpu0.energy_mj += 1_500
    gpu1.energy_mj += 500
    assert gpus.sample({a.pid: A})[A].energy_joules == 2.0


def test_an_energy_counter_that_went_back_gives_no_energy_that_time(monkeypatch, trees):
    a = trees()
    gpu = FakeGpu("GPU-0", compute_processes=[(a.worker, GiB)], energy_mj=9_000_000)
    FakeNvml([gpu]).install(monkeypatch)
    gpus = attribution()
    gpus.sample({a.pid: A})
    gpu.energy_mj = 1_000  # the driver was reloaded
    assert gpus.sample({a.pid: A})[A].energy_joules is None
    gpu.energy_mj = 4_000
    assert gpus.sample({a.pid: A})[A].energy_joules == 3.0


def test_mig_instances_give_memory_per_instance_and_energy_when_one_server_has_them_all(monkeypatch, trees):
    a = trees()
    first = mig_device("MIG-a", 1, 0, compute_processes=[(a.pid, 2 * GiB)])
    second = mig_device("MIG-b", 2, 0, compute_processes=[(a.worker, 3 * GiB)])
    gpu = FakeGpu("GPU-0", mig_mode=1, mig_slots=[first, None, second], energy_mj=1_000)
    nvml = FakeNvml([gpu]).install(monkeypatch)
    gpus = attribution()
    assert gpus.sample({a.pid: A}) == {A: GpuUse(5 * GiB, None, None, ("MIG-a", "MIG-b"))}
    gpu.energy_mj += 7_000
    assert gpus.sample({a.pid: A})[A].energy_joules == 7.0
    assert nvml.count("nvmlDeviceGetProcessUtilization", first) == 0


def test_without_nvml_it_answers_nothing_says_why_once_and_looks_again_later(monkeypatch, trees, caplog):
    a = trees()
    nvml = FakeNvml([], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND).install(monkeypatch)
    clock = Clock()
    gpus = attribution(retry_interval=300, clock=clock)
    with caplog.at_level(logging.INFO, logger="test.gpu"):
        assert gpus.sample({a.pid: A}) == {}
        assert gpus.sample({a.pid: A}) == {}
        assert nvml.init_calls == 1
        clock.now += 301
        assert gpus.sample({a.pid: A}) == {}
    assert nvml.init_calls == 2
    [said] = [r.getMessage() for r in caplog.records]
    assert "no NVIDIA driver" in said and "300s" in said


def test_with_no_servers_nvml_is_not_even_started(monkeypatch):
    nvml = FakeNvml([FakeGpu("GPU-0")]).install(monkeypatch)
    assert attribution().sample({}) == {}
    assert nvml.init_calls == 0


def test_a_gpu_lost_while_watched_is_left_out_and_the_others_still_attributed(monkeypatch, trees, caplog):
    a = trees()
    falling = FakeGpu("GPU-0", compute_processes=[(a.worker, GiB)])
    fine = FakeGpu("GPU-1", compute_processes=[(a.pid, 2 * GiB)])
    FakeNvml([falling, fine]).install(monkeypatch)
    gpus = attribution()
    assert gpus.sample({a.pid: A})[A].gpus == ("GPU-0", "GPU-1")
    falling.lost = True  # it fell off the bus
    with caplog.at_level(logging.ERROR, logger="test.gpu"):
        assert gpus.sample({a.pid: A}) == {A: GpuUse(2 * GiB, 0.0, 0.0, ("GPU-1",))}
        assert gpus.sample({a.pid: A}) == {A: GpuUse(2 * GiB, 0.0, 0.0, ("GPU-1",))}
    assert len([r for r in caplog.records if "is lost" in r.getMessage()]) == 1


def test_processes_that_are_gone_or_hide_their_memory(monkeypatch, trees):
    a = trees()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(10)
    # A pid that no longer exists is nobody's; a process whose memory NVML cannot read still uses the GPU.
    gpu = FakeGpu("GPU-0", compute_processes=[(gone.pid, GiB), (a.worker, None)])
    FakeNvml([gpu]).install(monkeypatch)
    assert attribution().sample({a.pid: A}) == {A: GpuUse(0, 0.0, None, ("GPU-0",))}


def test_close_shuts_nvml_down_and_later_samples_answer_nothing(monkeypatch, trees):
    a = trees()
    nvml = FakeNvml([FakeGpu("GPU-0", compute_processes=[(a.worker, GiB)])]).install(monkeypatch)
    gpus = attribution()
    assert A in gpus.sample({a.pid: A})
    gpus.close()
    assert nvml.refcount == 0
    assert gpus.sample({a.pid: A}) == {}
    assert nvml.init_calls == 1
