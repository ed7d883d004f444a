"""The kernel's lock event counters as debugfs shows them: every file, zeros included, in
lock_events_list.h's order, the PV averages computed as qspinlock_stat.h's lockevent_read()."""

import json
import subprocess
import sys

import pytest

from pvspin.kernel.lockevents import LOCK_EVENTS, debugfs_counts, lockevent_read


def test_hash_hops_is_the_kernels_two_decimal_average():
    assert lockevent_read({"pv_hash_hops": 7, "pv_kick_unlock": 4}, "pv_hash_hops") == "1.75"
    assert lockevent_read({"pv_hash_hops": 10, "pv_kick_unlock": 3}, "pv_hash_hops") == "3.33"
    assert lockevent_read({"pv_hash_hops": 5, "pv_kick_unlock": 3}, "pv_hash_hops") == "1.67"  # rounded to closest
    # the kernel's own quirk: a fraction that rounds up to 100 prints as three digits
    assert lockevent_read({"pv_hash_hops": 2 * 300 - 1, "pv_kick_unlock": 300}, "pv_hash_hops") == "1.100"
    assert lockevent_read({"pv_hash_hops": 3}, "pv_hash_hops") == "3.00"  # no kicks: the sum itself


def test_latencies_are_averages_per_kick_and_never_none():
    events = {"pv_latency_kick": 7401 * 3, "pv_kick_unlock": 3, "pv_latency_wake": 101, "pv_kick_wake": 2}
    assert lockevent_read(events, "pv_latency_kick") == 7401
    assert lockevent_read(events, "pv_latency_wake") == 51  # 50.5 rounds up, as DIV_ROUND_CLOSEST_ULL
    assert lockevent_read({}, "pv_latency_wake") == 0
    assert lockevent_read({"lock_slowpath": 9}, "lock_slowpath") == 9


def test_which_files_each_lock_has():
    assert list(debugfs_counts({}, "pvqspinlock")[1]) == list(LOCK_EVENTS)
    native = ["lock_pending", "lock_slowpath", "lock_use_node2", "lock_use_node3", "lock_use_node4", "lock_no_node"]
    assert list(debugfs_counts({}, "qspinlock")[1]) == native  # pv_* hidden: the unlock is native
    assert list(debugfs_counts({}, "virt-tas")[1]) == native
    assert debugfs_counts({}, "ticket") == ("", {})
    assert debugfs_counts({}, "pvticket")[0] == "kvm/spinlocks"


def pvspin(*args):
    return subprocess.run([sys.executable, "-m", "pvspin", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("lock", ["pvqspinlock", "qspinlock"])
def test_run_prints_every_counter_in_the_kernels_order(lock):
    args = ("run", "--lock", lock, "--vcpus", "8", "--pcpus", "4", "--duration-ms", "3")
    table, as_json = pvspin(*args), pvspin(*args, "--json")
    assert table.returncode == 0 and as_json.returncode == 0, table.stderr + as_json.stderr
    counts = json.loads(as_json.stdout)["guests"][0]["lock_event_counts"]
    assert None not in counts.values() and "None" not in table.stdout
    lines = table.stdout.splitlines()
    start = lines.index("guest0: /sys/kernel/debug/lock_event_counts/")
    shown = [line.split() for line in lines[start + 1 : start + 1 + len(counts)]]
    assert shown == [[name, str(value)] for name, value in counts.items()]
    assert list(counts) == list(debugfs_counts({}, lock)[1])
    if lock == "pvqspinlock":
        assert counts["pv_kick_unlock"] > 0 and 0 < counts["pv_latency_kick"] < 1e6  # an average, in ns
