"""The ``--trace`` file as a user looks at it in Perfetto: kick arrows, VM exits, named spin waits,
lock-word counters.

Perfetto's own trace processor (the ``perfetto`` Python package) cannot run here: it downloads its
``trace_processor_shell`` binary at first use, and this machine reaches no such host.  So
:func:`import_problems` checks the file against what Perfetto's JSON importer
(``src/trace_processor/importers/json/``) does with each event, strictly: the phases and fields it
reads, thread ids it would remap (tid 0 becomes the pid), slices that do not nest on their track
(the slice tracker drops them), flow events it ignores or cannot bind (v2 flows, ``bind_id`` with
``flow_out`` / ``flow_in``, bind only on complete slices).  The tests then query the parsed
events the way one would query the trace processor's ``slice``, ``flow`` and ``counter`` tables.
"""

from __future__ import annotations

import bisect
import json
from collections import Counter, defaultdict

import pytest

from pvspin.sim.command import build_scenario, execute
from pvspin.sim.trace import SLOWPATH_WAITS, WAITS

KNOWN_WAITS = set(WAITS.values()) | set(SLOWPATH_WAITS.values()) | {"no-node trylock spin"}
EXIT_NAMES = {"HLT", "PAUSE_INSTRUCTION", "VMCALL", "EXTERNAL_INTERRUPT"}
KEYS = {  # the fields each phase may have, all of which Perfetto's JSON importer reads
    "X": {"name", "ph", "ts", "dur", "pid", "tid", "cat", "args", "bind_id", "flow_in", "flow_out"},
    "i": {"name", "ph", "ts", "pid", "tid", "cat", "s", "args"},
    "C": {"name", "ph", "ts", "pid", "args"},
    "M": {"name", "ph", "pid", "tid", "args"},
}


def _number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def import_problems(trace) -> list[str]:
    """What Perfetto's JSON importer would reject, drop or misread in ``trace`` (parsed); [] if none."""
    if not isinstance(trace, dict) or not isinstance(trace.get("traceEvents"), list):
        return ["not the JSON object format with a traceEvents array"]
    problems: list[str] = []
    if trace.get("displayTimeUnit") != "ns":
        problems.append("displayTimeUnit is not ns")
    tid_pid: dict[int, int] = {}
    thread_names: set[tuple[int, int]] = set()
    process_names: set[int] = set()
    slices: dict[tuple[int, int], list[tuple[float, float, dict]]] = defaultdict(list)
    flow_out: dict[int, dict] = {}
    flow_in: dict[int, dict] = {}
    for e in trace["traceEvents"]:
        ph = e.get("ph")
        if ph not in KEYS:
            problems.append(f"phase {ph!r}: {e}")
            continue
        if set(e) - KEYS[ph]:
            problems.append(f"fields {sorted(set(e) - KEYS[ph])} in {e}")
        if not isinstance(e.get("name"), str) or not e["name"]:
            problems.append(f"no name: {e}")
        if not isinstance(e.get("pid"), int) or e["pid"] <= 0:
            problems.append(f"pid: {e}")
        if ph == "M":
            if e["name"] == "process_name":
                if "tid" in e or not e["args"].get("name"):
                    problems.append(f"process name: {e}")
                process_names.add(e["pid"])
            elif e["name"] in ("thread_name", "thread_sort_index"):
                if e["name"] == "thread_name" and not e["args"].get("name"):
                    problems.append(f"thread name: {e}")
                if e["name"] == "thread_sort_index" and not isinstance(e["args"].get("sort_index"), int):
                    problems.append(f"sort index: {e}")
                thread_names.add((e["pid"], e.get("tid")))
            else:
                problems.append(f"metadata the importer ignores: {e}")
            continue
        if not _number(e.get("ts")) or e["ts"] < 0:
            problems.append(f"ts: {e}")
            continue
        if ph == "C":
            if not e.get("args") or not all(_number(x) for x in e["args"].values()):
                problems.append(f"counter values: {e}")
            continue
        tid = e.get("tid")
        if not isinstance(tid, int) or tid <= 0:  # tid 0 is read as the pid: another track
            problems.append(f"tid: {e}")
            continue
        if tid_pid.setdefault(tid, e["pid"]) != e["pid"]:
            problems.append(f"tid {tid} in two processes")
        if ph == "i":
            if e.get("s") != "t":
                problems.append(f"instant scope: {e}")
            slices[(e["pid"], tid)].append((e["ts"], e["ts"], e))
            continue
        if not _number(e.get("dur")) or e["dur"] < 0:
            problems.append(f"dur: {e}")
            continue
        slices[(e["pid"], tid)].append((e["ts"], e["ts"] + e["dur"], e))
        if "bind_id" in e:
            out, into = e.get("flow_out") is True, e.get("flow_in") is True
            if not isinstance(e["bind_id"], int) or out == into:
                problems.append(f"flow fields: {e}")
            elif e["bind_id"] in (flow_out if out else flow_in):
                problems.append(f"flow {e['bind_id']} bound twice")
            else:
                (flow_out if out else flow_in)[e["bind_id"]] = e
        elif "flow_in" in e or "flow_out" in e:
            problems.append(f"flow direction without bind_id: {e}")
    for track, row in slices.items():
        if track not in thread_names:
            problems.append(f"track {track} has no name")
        if track[0] not in process_names:
            problems.append(f"process {track[0]} has no name")
        # the slice tracker's rule: on one track, a slice ends inside the one it starts in
        eps = 1e-6
        stack: list[float] = []  # the ends of the slices open at ``start``, outermost first
        for start, end, e in sorted(row, key=lambda s: (s[0], -s[1])):
            while stack and stack[-1] <= start + eps:
                stack.pop()
            if stack and end > stack[-1] + eps:
                problems.append(f"slice crosses its parent's end on {track}: {e}")
            stack.append(end)
    for fid, e in flow_in.items():
        if fid not in flow_out:
            problems.append(f"flow {fid} ends without a start")
        elif flow_out[fid]["ts"] > e["ts"]:
            problems.append(f"flow {fid} goes back in time")
    return problems


def traced(tmp_path, **flags) -> tuple[dict, dict]:
    """``pvspin run --trace`` with ``flags``: the result, and the trace file parsed."""
    path = tmp_path / "trace.json"
    result = execute(build_scenario(None, {"duration_ms": "3"} | flags), str(path), False)
    return result, json.loads(path.read_text())


def thread_names(events) -> dict[tuple[int, int], str]:
    return {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["name"] == "thread_name"}


def test_the_checker_catches_what_the_importer_would_drop():
    """A check that cannot fail checks nothing: each of these breaks one rule."""
    name = [{"name": "process_name", "ph": "M", "pid": 2, "args": {"name": "g"}},
            {"name": "thread_name", "ph": "M", "pid": 2, "tid": 7, "args": {"name": "t"}}]  # fmt: skip
    def x(ts, dur, **extra):
        return {"name": "s", "ph": "X", "ts": ts, "dur": dur, "pid": 2, "tid": 7, "cat": "c", **extra}
    good = {"traceEvents": [x(0, 10), x(2, 3), x(10, 1, bind_id=1, flow_out=True), x(12, 1, bind_id=1, flow_in=True),
                            *name], "displayTimeUnit": "ns"}  # fmt: skip
    assert import_problems(good) == []
    broken = [
        [x(0, 10), x(5, 10), *name],  # crosses its parent's end
        [x(0, 1, tid=0), *name],  # tid 0
        [x(5, 1, bind_id=1, flow_out=True), x(1, 1, bind_id=1, flow_in=True), *name],  # backwards
        [x(1, 1, bind_id=2, flow_in=True), *name],  # no start
        [x(0, 1)],  # no names
        [{"name": "c", "ph": "C", "ts": 0, "pid": 2, "args": {"v": "x"}}, *name],
        [{"name": "s", "ph": "i", "ts": 0, "pid": 2, "tid": 7, "s": "g"}, *name],
    ]
    for events in broken:
        assert import_problems({"traceEvents": events, "displayTimeUnit": "ns"}), events


def test_every_kick_draws_an_arrow_to_the_wake_up_of_the_vcpu_it_kicks(tmp_path):
    result, trace = traced(tmp_path, lock="pvqspinlock", vcpus="8", pcpus="4", spurious_hz="20000", seed="3")
    assert import_problems(trace) == []
    events = trace["traceEvents"]
    names = thread_names(events)
    starts = {e["bind_id"]: e for e in events if e.get("flow_out")}
    ends = {e["bind_id"]: e for e in events if e.get("flow_in")}
    kicks = [e for e in events if e["name"] == "VMCALL"]
    assert len(kicks) == sum(g["kicks"] for g in result["guests"]) > 0
    assert set(starts) >= set(ends) and len(ends) >= 1
    assert all(starts[i] in kicks for i in starts)
    halted = {}  # (pid, tid, end) -> the halted slice ending there
    for e in events:
        if e["name"] == "halted":
            halted[(e["pid"], e["tid"], round(e["ts"] + e["dur"], 6))] = e
    wakes = latched = polled = 0
    for fid, end in ends.items():
        kick = starts[fid]
        target = kick["args"]["target"]
        # the arrow goes forward: from the hypercall's end (a boosted kick's slice lasts until the kicker runs again)
        assert kick["ts"] + (7.4 if "yield_to" in kick["args"] else kick["dur"]) <= end["ts"] + 1e-6
        if end["name"] == "runnable":  # the target's wake-up: its halt ends there, and began before the kick ended
            assert names[(end["pid"], end["tid"])] == target  # one name for a vCPU: the kick's and its track's
            before = halted[(end["pid"], end["tid"], round(end["ts"], 6))]
            assert before["ts"] <= kick["ts"] + kick["dur"] and not kick["args"]["latched"]
            wakes += 1
        elif end["name"] == "pv_wait: poll woken":  # the kick ended the target's halt poll, as it polled
            assert names[(end["pid"], end["tid"])] == target and kick["args"]["polling"] and not kick["args"]["latched"]
            assert end["ts"] == pytest.approx(kick["ts"] + 7.4)
            polled += 1
        else:  # a kick latched on a vCPU not yet halted: its next HLT returns at once
            assert end["name"] == "HLT" and end["args"] == {"kick": "latched"} and kick["args"]["latched"]
            assert names[(end["pid"], end["tid"])] == f"{target} VM exits"
            latched += 1
    assert wakes > 0 and polled > 0
    # arrows without an end: the last kicks, whose wake-up the run did not reach (one per vCPU at most)
    assert len(starts) - len(ends) <= 8


def test_every_vm_exit_is_a_slice_as_perf_kvm_stat_counts_them(tmp_path):
    result, trace = traced(tmp_path, lock="pvqspinlock", vcpus="8", pcpus="4", irq_rate="20000")
    assert import_problems(trace) == []
    events = trace["traceEvents"]
    names = thread_names(events)
    exits = [e for e in events if e.get("cat") == "exit"]
    assert {e["name"] for e in exits} == EXIT_NAMES
    counted = Counter(e["name"] for e in exits)
    stat = result["guests"][0]["kvm_exits"]
    assert counted == {reason: row["samples"] for reason, row in stat.items() if row["samples"]}
    assert all(names[(e["pid"], e["tid"])].endswith(" VM exits") for e in exits)
    mhz = build_scenario(None, {}).host.costs.freq_mhz
    kick_us = build_scenario(None, {}).host.costs.kick_hypercall_ns / 1000
    # a kick hypercall lasts its cost, less what a preemption in its middle took (that is an exit of its own),
    # or, when its boost gave the pCPU away (kvm_sched_yield), until the kicker's VM entry
    calls = [e["dur"] for e in exits if e["name"] == "VMCALL" and "yield_to" not in e["args"]]
    boosted = [e["dur"] for e in exits if e["name"] == "VMCALL" and "yield_to" in e["args"]]
    assert all(d < kick_us + 1 / mhz for d in calls)
    assert all(d > kick_us for d in boosted)
    assert sum(abs(d - kick_us) < 1 / mhz for d in calls) > len(calls) / 2


def test_no_vm_exits_on_bare_metal(tmp_path):
    _, trace = traced(tmp_path, host="baremetal", lock="qspinlock", vcpus="4", pcpus="4")
    assert import_problems(trace) == []
    assert not [e for e in trace["traceEvents"] if e.get("cat") == "exit"]


@pytest.mark.parametrize(
    ("flags", "waits"),
    [
        (dict(lock="qspinlock", vcpus="8", pcpus="4", irq_rate="20000"), {"MCS spin", "queue head spin", "pending spin"}),
        (dict(lock="pvqspinlock", vcpus="8", pcpus="4"), {"pv_wait_node", "pv_wait_head_or_lock"}),
        (dict(lock="pvqspinlock-4.2", vcpus="8", pcpus="4"), {"pv_wait_node", "pv_wait_head"}),
        (dict(lock="ticket", vcpus="6", pcpus="4"), {"__ticket_spin_lock"}),
        (dict(host="kvm-nopv", lock="virt-tas", vcpus="6", pcpus="4"), {"virt_spin_lock"}),
    ],
    ids=["qspinlock", "pvqspinlock", "pvqspinlock-4.2", "ticket", "virt-tas"],
)
def test_each_spin_slice_names_its_wait_and_its_lock(flags, waits, tmp_path):
    _, trace = traced(tmp_path, **flags)
    assert import_problems(trace) == []
    spins = [e for e in trace["traceEvents"] if e.get("cat") == "spin"]
    assert spins
    locks = {"lock0", "irq_lock0"}
    for e in spins:
        a = e["args"]
        assert e["name"] == f"{a['wait']} {a['lock']}" and a["lock"] in locks and a["wait"] in KNOWN_WAITS, e
        assert a["on"].startswith((a["lock"] + ".", "qnodes[")), e  # the lock word, or an MCS node
    assert waits <= {e["args"]["wait"] for e in spins}


def counter_rows(events) -> dict[tuple[int, str], list[tuple[float, dict]]]:
    rows: dict[tuple[int, str], list[tuple[float, dict]]] = defaultdict(list)
    for e in events:
        if e["ph"] == "C":
            rows[(e["pid"], e["name"])].append((e["ts"], e["args"]))
    return rows


def value_at(row: list[tuple[float, dict]], ts: float) -> dict | None:
    i = bisect.bisect_right(row, ts, key=lambda r: r[0]) - 1
    return row[i][1] if i >= 0 else None


def open_at(spins: list[dict], times: list[float]) -> list[list[dict]]:
    """For each of ``times`` (sorted), the slices of ``spins`` open then (started before, ending after)."""
    by_start = sorted(spins, key=lambda e: e["ts"])
    by_end = sorted(spins, key=lambda e: e["ts"] + e["dur"])
    now: dict[int, dict] = {}
    i = j = 0
    out = []
    for ts in times:
        while i < len(by_start) and by_start[i]["ts"] < ts:
            if by_start[i]["ts"] + by_start[i]["dur"] > ts:  # not over already (its end may be passed by)
                now[id(by_start[i])] = by_start[i]
            i += 1
        while j < len(by_end) and by_end[j]["ts"] + by_end[j]["dur"] <= ts:
            now.pop(id(by_end[j]), None)
            j += 1
        out.append(list(now.values()))
    return out


@pytest.mark.parametrize("lock", ["qspinlock", "pvqspinlock"])
def test_the_lock_word_counters_agree_with_the_waiters_on_the_timeline(lock, tmp_path):
    """``lockN locked/pending/tail cpu/queue``: the word as the kernel's (tail, pending, locked)
    triple, and the MCS queue, never shorter than the vCPUs spinning in it at that moment."""
    _, trace = traced(tmp_path, lock=lock, vcpus="8", pcpus="4", irq_rate="20000")
    assert import_problems(trace) == []
    events = trace["traceEvents"]
    rows = counter_rows(events)
    assert {name for _, name in rows} == {"lock0", "irq_lock0"}
    spins = [e for e in events if e.get("cat") == "spin"]
    checked = 0
    for (pid, name), row in rows.items():
        times = [t for t, _ in row]
        assert times == sorted(times)
        for ts, values in row:
            assert set(values) == {"locked", "pending", "tail cpu", "queue"}
            assert values["locked"] in ((0, 1) if lock == "qspinlock" else (0, 1, 3))  # 3: _Q_SLOW_VAL
            assert values["pending"] in (0, 1)
            assert (values["queue"] == 0) == (values["tail cpu"] == -1), (name, ts, values)
            assert values["tail cpu"] < 8
            assert values["queue"] <= 8  # writers take lock0, handlers irq_lock0: one node per vCPU in a queue
        mine = [e for e in spins if e["args"]["lock"] == name and e["pid"] == pid]
        middles = sorted(e["ts"] + e["dur"] / 2 for e in mine if e["dur"] > 0)
        for ts, now in zip(middles, open_at(mine, middles), strict=True):
            values = value_at(row, ts)
            mcs = sum(s["args"]["wait"] in ("MCS spin", "pv_wait_node") for s in now)
            head = sum(s["args"]["wait"] in ("queue head spin", "pv_wait_head_or_lock") for s in now)
            # every spinner is queued, the head apart from the MCS spinners -- but one of these may
            # already be the head: handed the lock's queue (node->locked = 1), it has not seen it yet
            assert head <= 1, now
            assert values["queue"] >= mcs + head, (name, ts, values, now)
            if mcs or head:
                assert values["tail cpu"] >= 0
                checked += 1
    assert checked > 100


def test_ticket_counters_count_the_waiters(tmp_path):
    _, trace = traced(tmp_path, lock="ticket", vcpus="6", pcpus="4")
    assert import_problems(trace) == []
    events = trace["traceEvents"]
    row = counter_rows(events)[(2, "lock0")]
    assert row and all(set(v) == {"head", "tail", "queue"} for _, v in row)
    spins = [e for e in events if e.get("cat") == "spin"]
    middles = sorted(e["ts"] + e["dur"] / 2 for e in spins)
    for ts, now in zip(middles, open_at(spins, middles), strict=True):
        assert value_at(row, ts)["queue"] + 1 >= len(now)  # the next in line may not have seen its turn yet


def test_the_same_seed_writes_the_same_trace_bytes(tmp_path):
    files = []
    for i in range(2):
        path = tmp_path / f"t{i}.json"
        execute(build_scenario(None, {"duration_ms": "2", "lock": "pvqspinlock", "vcpus": "6", "pcpus": "4",
                                      "irq_rate": "20000"}), str(path), False)  # fmt: skip
        files.append(path.read_bytes())
    assert files[0] == files[1]
