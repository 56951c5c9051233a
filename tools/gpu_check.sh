#!/usr/bin/env bash
# GPU attribution on a real NVIDIA GPU (CI has none; tests/receivers/inference/test_gpu.py uses the NVML fake).
#
#   tools/gpu_check.sh                 # from the checkout, with the project installed (make install)
#   PYTHON=/path/to/python MIB=1024 SECONDS_BUSY=20 tools/gpu_check.sh
#
# Starts a "server" process whose child (as vLLM's engine core is its server's child) allocates MIB MiB
# on GPU 0 and, with torch, multiplies matrices for SECONDS_BUSY seconds; without torch it allocates
# through the driver's own libcuda (no kernels, so utilisation may stay 0); with neither it says so and
# stops. Then it prints what GpuAttribution reports for the server each second, what nvidia-smi says
# about the same pid, and what discover() finds on the host. Exit 0: the server got its child's memory;
# 1: it did not; 2: the check could not run here. Takes under a minute and leaves no process behind.
set -u
cd "$(dirname "$0")/.." || exit 2
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export MIB=${MIB:-512} SECONDS_BUSY=${SECONDS_BUSY:-12} PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

exec "$PYTHON" - <<'EOF'
import os, shutil, signal, subprocess, sys, time

try:
    from agent.receivers.inference.discovery import discover
    from agent.receivers.inference.gpu import GpuAttribution
    import pynvml  # noqa: F401
except ImportError as exc:
    print(f"cannot run the check: {exc} (install the project: make install)")
    sys.exit(2)

MIB, BUSY = int(os.environ["MIB"]), float(os.environ["SECONDS_BUSY"])

WORKER = r'''
import ctypes, sys, time
size, busy = int(sys.argv[1]) << 20, float(sys.argv[2])
try:
    import torch
    if not torch.cuda.is_available():
        raise ImportError("torch sees no CUDA device")
    held = torch.empty(size, dtype=torch.uint8, device="cuda:0")
    a = torch.randn(2048, 2048, device="cuda:0")
    print("torch", flush=True)
    end = time.time() + busy
    while time.time() < end:
        a = a @ a
        a = a / a.norm()
        torch.cuda.synchronize()
except ImportError as why:
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        print(f"skip no torch ({why}) and no libcuda.so.1", flush=True)
        sys.exit(0)
    ctx, ptr, dev = ctypes.c_void_p(), ctypes.c_uint64(), ctypes.c_int()
    for call in (lambda: cuda.cuInit(0), lambda: cuda.cuDeviceGet(ctypes.byref(dev), 0),
                 lambda: cuda.cuCtxCreate_v2(ctypes.byref(ctx), 0, dev),
                 lambda: cuda.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(size))):
        if call() != 0:
            print("skip libcuda could not allocate", flush=True)
            sys.exit(0)
    print(f"libcuda (no torch: {why}; no kernels run)", flush=True)
    time.sleep(busy)
'''
SERVER = r'''
import subprocess, sys
worker = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], sys.argv[3]], stdout=subprocess.PIPE,
                          text=True)
print(worker.pid, worker.stdout.readline().strip(), flush=True)
worker.wait()
'''

server = subprocess.Popen([sys.executable, "-c", SERVER, WORKER, str(MIB), str(BUSY)], stdout=subprocess.PIPE,
                          text=True, start_new_session=True)
try:
    worker_pid, _, how = server.stdout.readline().strip().partition(" ")
    if not how or how.startswith("skip"):
        print(f"skipped: {how[5:] if how else 'the worker did not start'}")
        sys.exit(2)
    worker_pid = int(worker_pid)
    print(f"server pid {server.pid}, worker pid {worker_pid} holds {MIB} MiB on GPU 0 via {how}")
    gpus = GpuAttribution()
    best = None
    for second in range(int(min(BUSY, 10))):
        time.sleep(1)
        use = gpus.sample({server.pid: "gpu-check"}).get("gpu-check")
        print(f"  t={second + 1:>2}s  {use}")
        if use is not None:
            best = use if best is None or (use.utilization or 0) >= (best.utilization or 0) else best
    smi = shutil.which("nvidia-smi")
    smi_mib = None
    if smi:
        out = subprocess.run([smi, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20).stdout
        print("nvidia-smi compute apps (pid, MiB):", out.strip().replace("\n", "; ") or "none")
        for line in out.splitlines():
            pid, _, mib = (part.strip() for part in line.partition(","))
            if pid == str(worker_pid) and mib.isdigit():
                smi_mib = int(mib)
    print("discover():", discover() or "no inference server on this host")
    gpus.close()
    if best is None:
        print("FAIL: GpuAttribution gave the server nothing")
        sys.exit(1)
    got = best.memory_bytes / 2**20
    print(f"server's GPU memory {got:.0f} MiB (allocated {MIB} MiB + CUDA context"
          + (f"; nvidia-smi {smi_mib} MiB" if smi_mib is not None else "") + f"), utilisation {best.utilization}, "
          f"energy since last sample {best.energy_joules} J, GPUs {best.gpus}")
    ok = got >= MIB and (smi_mib is None or abs(got - smi_mib) <= 1)
    if how == "torch" and not best.utilization:
        print("note: no utilisation reported while torch was busy (the GPU may not support per-process "
              "utilisation, or the samples fell between ours)")
    print("PASS" if ok else "FAIL: the server's memory is not its worker's")
    sys.exit(0 if ok else 1)
finally:
    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.wait(10)
EOF
