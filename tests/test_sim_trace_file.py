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
from pvspin.sim.trace import HOST_PID, LOCK_TIDS, TIDS, Tracer

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


def tiny_trace(window: tuple[int, int] | None = None) -> tuple[dict, int]:
    """The trace of the tiny run, as a parsed file, and the clock (MHz)."""
    host = HostConfig(hypervisor="baremetal", pcpus=2)
    tracer = Tracer(host.costs.freq_mhz, window)
    sim = Simulator(host, seed=0, tracer=tracer)
    sim.add_guest("g0", Memory(), [holder(), worker()])
    out = io.StringIO()
    tracer.start(out)
    sim.run(END)
    tracer.finish(sim.now, sim)
    return json.loads(out.getvalue()), host.costs.freq_mhz


def expected_timeline(mhz: int, window: tuple[int, int] | None = None) -> list[dict]:
    """What the tiny run does, in the order the slices end (when the tracer writes them); within
    ``window`` (cycles), the slices clipped to it and those with nothing inside it left out."""

    def span(name, start, end, pid, tid, cat, **extra):
        if window is not None and (start < window[0] or end > window[1]):
            start, end = max(start, window[0]), min(end, window[1])
            if start >= end:
                return None
        return {"name": name, "ph": "X", "ts": start / mhz, "dur": (end - start) / mhz, "pid": pid, "tid": tid,
                "cat": cat, **extra}  # fmt: skip

    guest = 2  # the first guest's process id
    vcpu0, vcpu1, lock0 = guest * TIDS, guest * TIDS + 1, guest * TIDS + LOCK_TIDS  # no tid is 0
    pcpu0, pcpu1 = HOST_PID * TIDS, HOST_PID * TIDS + 1
    spans = [
        span("runnable", 0, 0, guest, vcpu0, "vcpu"),  # both start runnable and run at once
        span("runnable", 0, 0, guest, vcpu1, "vcpu"),
        span("g0/vcpu0", 0, HOLD, guest, lock0, "lock", args={"lock": "lock0"}),
        span("g0/vcpu1", 0, BUSY, HOST_PID, pcpu1, "pcpu"),
        span("running", 0, BUSY, guest, vcpu1, "vcpu"),
        span("g0/vcpu0", 0, HOLD + AFTER, HOST_PID, pcpu0, "pcpu"),
        span("running", 0, HOLD + AFTER, guest, vcpu0, "vcpu"),
    ]
    return [e for e in spans if e is not None]


def names(host_pcpus: int) -> list[dict]:
    meta = [{"name": "process_name", "ph": "M", "pid": HOST_PID, "args": {"name": "host pCPUs"}}]
    for p in range(host_pcpus):
        tid = HOST_PID * TIDS + p
        meta.append({"name": "thread_name", "ph": "M", "pid": HOST_PID, "tid": tid, "args": {"name": f"pCPU {p}"}})
        meta.append({"name": "thread_sort_index", "ph": "M", "pid": HOST_PID, "tid": tid, "args": {"sort_index": p}})
    meta.append({"name": "process_name", "ph": "M", "pid": 2, "args": {"name": "guest g0"}})
    # each vCPU's row, then (were there any exits) its VM-exit row, then the locks' rows
    for tid, name, index in ((2 * TIDS, "g0/vcpu0", 0), (2 * TIDS + 1, "g0/vcpu1", 2),
                             (2 * TIDS + LOCK_TIDS, "lock0 holder", 2 * LOCK_TIDS)):  # fmt: skip
        meta.append({"name": "thread_name", "ph": "M", "pid": 2, "tid": tid, "args": {"name": name}})
        meta.append({"name": "thread_sort_index", "ph": "M", "pid": 2, "tid": tid, "args": {"sort_index": index}})
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
    assert {e["ph"] for e in events} == {"X", "i", "M", "C"}
    assert all(e["dur"] >= 0 for e in events if e["ph"] == "X")
    named = {(e["pid"], e.get("tid")) for e in events if e["ph"] == "M"}
    assert {(e["pid"], e["tid"]) for e in events if e["ph"] in ("X", "i")} <= named  # every track has a name
    assert {(e["pid"], None) for e in events if e["ph"] == "C"} <= named  # counters belong to a named guest


def test_a_crashed_run_leaves_a_valid_trace_up_to_the_crash(tmp_path):
    path = tmp_path / "t.json"
    out = subprocess.run([sys.executable, "-m", "pvspin", "run", "--duration-ms", "0.5", "--lock",
                          f"{CRASHES}:LockRaises", "--trace", str(path)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 1 and "crashed" in out.stderr
    events = json.loads(path.read_text())["traceEvents"]
    assert any(e["ph"] == "X" for e in events) and any(e["ph"] == "M" for e in events)


# ------------------------------------------------------------------------------------ --trace-window
def clipped(events: list[dict], lo: float, hi: float, eps: float) -> list[dict]:
    """``events`` as a window [lo, hi] (µs) keeps them: slices clipped to it, none left with nothing
    inside; counters within it, each preceded by the value it had at ``lo``; flow arrows whose start
    it keeps."""
    out = []
    before: dict[tuple, dict] = {}  # (pid, counter) -> its last value before the window
    shown: set[tuple] = set()
    # the flows whose start is kept (an arrow's end may come first in the file: a boosted kick's
    # slice is written at the kicker's VM entry, after the kicked vCPU ran)
    starts = {e["bind_id"] for e in events if e.get("flow_out") and min(e["ts"] + e["dur"], hi) - max(e["ts"], lo) >= eps}
    for e in events:
        if e["ph"] == "C":
            key = (e["pid"], e["name"])
            if e["ts"] < lo:
                before[key] = e["args"]
            elif e["ts"] <= hi:
                if key not in shown and key in before and e["ts"] > lo:
                    out.append({**e, "ts": lo, "args": before[key]})
                shown.add(key)
                out.append(e)
            continue
        if e["ph"] == "M" and before:  # the counters that did not change within the window: their value there
            out += [{"name": key[1], "ph": "C", "ts": lo, "pid": key[0], "args": args}
                    for key, args in before.items() if key not in shown]  # fmt: skip
            before = {}
        if e["ph"] == "i":
            if lo <= e["ts"] <= hi:
                out.append(e)
        elif e["ph"] == "X":
            start, end = e["ts"], e["ts"] + e["dur"]
            if start < lo or end > hi:
                start, end = max(start, lo), min(end, hi)
                if end - start < eps:
                    continue
                e = {**e, "ts": start, "dur": end - start}
            if e.get("flow_in") and e["bind_id"] not in starts:
                e = {k: v for k, v in e.items() if k not in ("bind_id", "flow_in")}
            out.append(e)
        else:
            out.append(e)
    return out


def test_a_window_keeps_what_happens_within_it_clipped():
    mhz = HostConfig().costs.freq_mhz
    lo, hi = HOLD // 2, HOLD + AFTER // 2  # cuts the lock slice, vCPU1's run and vCPU0's run
    trace, _ = tiny_trace((lo, hi))
    assert trace["traceEvents"] == expected_timeline(mhz, (lo, hi)) + names(2)
    starts = {e["ts"] for e in trace["traceEvents"] if e["ph"] == "X"}
    ends = {e["ts"] + e["dur"] for e in trace["traceEvents"] if e["ph"] == "X"}
    assert starts == {lo / mhz} and hi / mhz in ends  # all began before it; the last ones go past it


def close(a: list[dict], b: list[dict], eps: float) -> bool:
    """The same events, times to within ``eps`` (a clipped duration is a difference of two floats)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if {k: v for k, v in x.items() if k not in ("ts", "dur")} != {k: v for k, v in y.items() if k not in ("ts", "dur")}:
            return False
        if abs(x.get("ts", 0) - y.get("ts", 0)) > eps or abs(x.get("dur", 0) - y.get("dur", 0)) > eps:
            return False
    return True


def test_run_trace_window_is_the_whole_trace_clipped(tmp_path):
    """``--trace-window`` writes what the whole trace has within the window, and nothing else."""
    args = ["run", "--lock", "pvqspinlock", "--vcpus", "6", "--pcpus", "4", "--duration-ms", "2", "--warmup-ms", "1",
            "--irq-rate", "20000"]  # fmt: skip
    whole, part = tmp_path / "whole.json", tmp_path / "part.json"
    for path, extra in ((whole, []), (part, ["--trace-window", "1.5:2.25"])):
        out = subprocess.run([sys.executable, "-m", "pvspin", *args, "--trace", str(path), *extra], capture_output=True,
                             text=True, timeout=300)  # fmt: skip
        assert out.returncode == 0, out.stderr
    mhz = HostConfig().costs.freq_mhz
    lo, hi = 1.5 * 1000, 2.25 * 1000  # µs
    events = json.loads(part.read_text())["traceEvents"]
    expected = clipped(json.loads(whole.read_text())["traceEvents"], lo, hi, 0.5 / mhz)
    assert close(events, expected, 0.5 / mhz)
    timed = [e for e in events if e["ph"] != "M"]
    assert timed and all(lo <= e["ts"] and e["ts"] + e.get("dur", 0) <= hi + 0.5 / mhz for e in timed)
    assert {"X", "i", "C"} <= {e["ph"] for e in timed}
    assert any(e.get("flow_in") for e in timed)  # a kick's arrow inside the window
