"""``pvspin run`` speaks locktorture: its statistics lines, periodic with ``--stat-interval``, its
closing SUCCESS/FAILURE line, exit status 1 on FAILURE, and its knobs nwriters_stress and long_hold."""

import json
import re
import subprocess
import sys
from pathlib import Path

from pvspin.sim.command import locktorture_lines
from pvspin.sim.scenario import Scenario, merge
from pvspin.sim.workload import LockTorture

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "user_lock.py"
BASE = ("run", "--vcpus", "4", "--pcpus", "2", "--duration-ms", "2")


def pvspin(*args):
    return subprocess.run([sys.executable, "-m", "pvspin", *args], capture_output=True, text=True, timeout=300)


def test_periodic_statistics_every_interval_then_the_last_and_success():
    out = pvspin(*BASE, "--stat-interval", "0.5")
    assert out.returncode == 0, out.stderr
    writes = [line for line in out.stdout.splitlines() if "Writes:" in line]
    # at 0.5, 1.0 and 1.5 ms, then the last at the end (2 ms), as lock_torture_cleanup() prints it
    stamps = [re.search(r"\[\s*(\d+\.\d{6})\]", line).group(1) for line in writes]
    assert stamps == ["0.000500", "0.001000", "0.001500", "0.002000"]
    totals = [int(re.search(r"Total: (\d+)", line).group(1)) for line in writes]
    assert totals == sorted(totals) and totals[0] > 0
    assert re.fullmatch(r"guest0: \[    0\.002000\] Writes:  Total: \d+  Max/Min: \d+/\d+ (\?\?\?)?  Fail: 0",
                        writes[-1])
    assert "guest0: spin_lock-torture:--- End of test: SUCCESS: nwriters_stress=4" in out.stdout


def test_a_broken_lock_is_failure_and_exit_status_1():
    out = pvspin(*BASE, "--lock", f"{EXAMPLE}:BrokenTasLock")
    assert out.returncode == 1, out.stderr
    assert re.search(r"Writes:  Total: \d+  Max/Min: \d+/\d+ (\?\?\?)?  Fail: 1 !!!", out.stdout)  # a bool, as the kernel's
    assert "End of test: FAILURE" in out.stdout
    as_json = pvspin(*BASE, "--lock", f"{EXAMPLE}:BrokenTasLock", "--json")
    assert as_json.returncode == 1
    g = json.loads(as_json.stdout)["guests"][0]
    assert g["locktorture"]["verdict"] == "FAILURE" and g["fail"] > 1  # the count stays in the JSON and the table


def test_unfair_writers_are_flagged_as_the_kernel_does():
    stats = {"t_s": 0.001, "total": 30, "max": 21, "min": 9, "fail": 0}
    g = {"locktorture": {"stats": [stats], "nwriters_stress": 2, "long_hold": None, "verdict": "SUCCESS"}}
    assert locktorture_lines(g)[0] == "[    0.001000] Writes:  Total: 30  Max/Min: 21/9 ???  Fail: 0"
    stats["min"] = 10  # max / 2 > min, in integers
    assert locktorture_lines(g)[0] == "[    0.001000] Writes:  Total: 30  Max/Min: 21/10   Fail: 0"


def test_fewer_writers_than_vcpus():
    out = pvspin(*BASE, "--nwriters-stress", "2", "--json")
    assert out.returncode == 0, out.stderr
    g = json.loads(out.stdout)["guests"][0]
    assert g["locktorture"]["nwriters_stress"] == 2 and len(g["per_vcpu"]["acquisitions"]) == 2
    assert min(g["per_vcpu"]["acquisitions"]) > 0


def test_more_writers_than_vcpus_run_as_guest_threads():
    out = pvspin(*BASE, "--nwriters-stress", "5", "--json")  # tests/test_sim_guest_threads.py tests them
    assert out.returncode == 0, out.stderr
    g = json.loads(out.stdout)["guests"][0]
    assert g["locktorture"]["nwriters_stress"] == 5 and len(g["per_writer"]["acquisitions"]) == 5
    assert len(g["per_vcpu"]["acquisitions"]) == 4


def test_too_many_writer_threads_per_vcpu_are_refused():
    out = pvspin(*BASE, "--nwriters-stress", "257")
    assert out.returncode == 2
    assert out.stderr.strip() == "error: guests.0: nwriters_stress 257: at most 64 writer threads per vCPU (4 vCPUs)"


def test_long_hold_draws_with_the_kernels_odds():
    spec = Scenario.model_validate(merge(Scenario().model_dump(), {"guests": [{"vcpus": 3, "workload": {
        "long_hold": 2, "nwriters_stress": 3}}]})).guests[0]  # fmt: skip
    torture = LockTorture(_NoLocks(), _NoMemory(), 3, spec.workload, 0, 2500)
    assert torture.long_hold_every == 3 * 2000 * 2 and torture.long_hold == 2 * 2_500_000
    out = pvspin(*BASE, "--long-hold", "1")
    assert out.returncode == 0 and "End of test: SUCCESS: long_hold=1 nwriters_stress=4" in out.stdout


def test_long_hold_and_long_hold_every_are_not_both_given(tmp_path):
    scenario = tmp_path / "s.toml"
    scenario.write_text("[[guests]]\n[guests.workload]\nlong_hold_every = 10\n")
    out = pvspin(*BASE, "--scenario", str(scenario), "--long-hold", "1")
    assert out.returncode == 2 and "give one of them" in out.stderr


class _NoLocks:
    def alloc_lock(self, name):
        return name


class _NoMemory:
    def alloc(self, layout, name):
        return name
