"""The ``--trace`` file: streamed as the run goes, valid Chrome trace JSON at the end, and the
timeline it should hold (a run small enough to write down by hand)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from pvspin.machine import ops as o
from pvspin.machine.memory import Memory
from pvspin.sim.config import HostConfig
from pvspin.sim.engine import Simulator
from pvspin.sim.trace import HOST_PID, Tracer

CRASHES = Path(__file__).resolve().parent / "guest_crashes" / "locks.py"

# the tiny run: bare metal (no exits, no switches), vCPU k alone on pCPU k
HOLD, AFTER, BUSY = 1_000, 2_000, 1_500  # cycles: vCPU0 holds lock 0, then works; vCPU1 works
END = 10_000  # the run's length, past both programs' end


def holder():
    yield o.cs_enter(0)
    yield o.work(HOLD, o.WORK_CS)
    yield o.cs_exit(0)
    yield o.work(AFTER)


def worker():
    yield o.work(BUSY)


def tiny_trace() -> tuple[dict, int]:
    """The trace of the tiny run, as a parsed file, and the clock (MHz)."""
    host = HostConfig(hypervisor="baremetal", pcpus=2)
    tracer = Tracer(host.costs.freq_mhz)
    sim = Simulator(host, seed=0, tracer=tracer)
    sim.add_guest("g0", Memory(), [holder(), worker()])
    out = io.StringIO()
    tracer.start(out)
    sim.run(END)
    tracer.finish(sim.now, sim)
    return json.loads(out.getvalue()), host.costs.freq_mhz


def expected_timeline(mhz: int) -> list[dict]:
    """What the tiny run does, in the order the slices end (when the tracer writes them)."""

    def span(name, start, end, pid, tid, cat, **extra):
        return {"name": name, "ph": "X", "ts": start / mhz, "dur": (end - start) / mhz, "pid": pid, "tid": tid,
                "cat": cat, **extra}  # fmt: skip

    guest = 2  # the first guest's process id
    return [
        span("runnable", 0, 0, guest, 0, "vcpu"),  # both start runnable and run at once
        span("runnable", 0, 0, guest, 1, "vcpu"),
        span("g0/vcpu0", 0, HOLD, guest, 1000, "lock", args={"lock": "0"}),
        span("g0/vcpu1", 0, BUSY, HOST_PID, 1, "pcpu"),
        span("running", 0, BUSY, guest, 1, "vcpu"),
        span("g0/vcpu0", 0, HOLD + AFTER, HOST_PID, 0, "pcpu"),
        span("running", 0, HOLD + AFTER, guest, 0, "vcpu"),
    ]


def names(host_pcpus: int) -> list[dict]:
    meta = [{"name": "process_name", "ph": "M", "pid": HOST_PID, "args": {"name": "host pCPUs"}}]
    meta += [{"name": "thread_name", "ph": "M", "pid": HOST_PID, "tid": p, "args": {"name": f"pCPU {p}"}}
             for p in range(host_pcpus)]  # fmt: skip
    meta.append({"name": "process_name", "ph": "M", "pid": 2, "args": {"name": "guest g0"}})
    for tid, name in ((0, "g0/vcpu0"), (1, "g0/vcpu1"), (1000, "lock 0 holder")):
        meta.append({"name": "thread_name", "ph": "M", "pid": 2, "tid": tid, "args": {"name": name}})
    return meta


def test_the_tiny_run_writes_its_timeline_then_the_track_names():
    trace, mhz = tiny_trace()
    assert trace["displayTimeUnit"] == "ns"
    assert trace["traceEvents"] == expected_timeline(mhz) + names(2)


def test_a_run_streams_its_trace_as_it_goes(tmp_path):
    """Slices reach the file while the run goes on, not only at its end."""
    host = HostConfig(hypervisor="baremetal", pcpus=2)
    tracer = Tracer(host.costs.freq_mhz)
    sim = Simulator(host, seed=0, tracer=tracer)
    sim.add_guest("g0", Memory(), [holder(), worker()])
    path = tmp_path / "t.json"
    with path.open("w") as out:
        tracer.start(out)
        sim.run(HOLD + AFTER)  # both programs ended: their slices are written
        out.flush()
        written = path.read_text()
        assert written.startswith('{"traceEvents":[') and written.count('"ph":"X"') == len(expected_timeline(1))
        tracer.finish(sim.now, sim)
    assert json.loads(path.read_text())["traceEvents"][: len(expected_timeline(1))] == expected_timeline(
        host.costs.freq_mhz
    )


def test_the_run_command_writes_a_trace_that_loads(tmp_path):
    path = tmp_path / "t.json"
    out = subprocess.run([sys.executable, "-m", "pvspin", "run", "--vcpus", "4", "--pcpus", "2", "--duration-ms", "1",
                          "--irq-rate", "20000", "--trace", str(path)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr
    trace = json.loads(path.read_text())
    events = trace["traceEvents"]
    assert {e["ph"] for e in events} == {"X", "i", "M"}
    assert all(e["dur"] >= 0 for e in events if e["ph"] == "X")
    named = {(e["pid"], e.get("tid")) for e in events if e["ph"] == "M"}
    assert {(e["pid"], e["tid"]) for e in events if e["ph"] != "M"} <= named  # every track has a name


def test_a_crashed_run_leaves_a_valid_trace_up_to_the_crash(tmp_path):
    path = tmp_path / "t.json"
    out = subprocess.run([sys.executable, "-m", "pvspin", "run", "--duration-ms", "0.5", "--lock",
                          f"{CRASHES}:LockRaises", "--trace", str(path)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 1 and "crashed" in out.stderr
    events = json.loads(path.read_text())["traceEvents"]
    assert any(e["ph"] == "X" for e in events) and any(e["ph"] == "M" for e in events)
