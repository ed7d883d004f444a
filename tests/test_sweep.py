"""``pvspin sweep``: the grid, the files, resuming, determinism, plots and one-line errors."""

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pvspin.sim import sweep as sweep_module
from pvspin.sim.sweep import BadInput, WorkersLost, build_sweep, measure, run_sweep

TINY = {"host": {"pcpus": 2}, "duration_ms": 0.5}


def quiet(_line):
    pass


def tiny_sweep(params=("overcommit=1,2",), locks="qspinlock,virt-tas", seeds=2):
    return build_sweep(list(params), locks, seeds, overrides=TINY)


def test_grid_maps_overcommit_to_vcpus_and_locks_to_their_host():
    sweep = tiny_sweep(params=("overcommit=1,1.5",), locks="qspinlock,pvqspinlock,virt-tas", seeds=1)
    seen = {(p.lock, p.values[0]): p.scenario for p in sweep.points()}
    assert len(seen) == 6
    assert seen["qspinlock", 1].guests[0].vcpus == 2 and seen["qspinlock", 1.5].guests[0].vcpus == 3
    assert seen["virt-tas", 1.5].host.hypervisor == "kvm-nopv"
    assert seen["pvqspinlock", 1.5].host.hypervisor == "kvm" and seen["qspinlock", 1].host.hypervisor == "kvm"


def test_an_impossible_lock_for_a_point_is_named():
    with pytest.raises(BadInput, match="pvqspinlock at overcommit=0.5: .*ncpus > 1"):
        tiny_sweep(params=("overcommit=0.5",), locks="pvqspinlock")


def test_seeds_and_a_second_parameter_multiply_the_grid():
    sweep = build_sweep(["overcommit=1,2", "hold-ns=100,400,1600"], "qspinlock", 3, overrides=TINY)
    points = sweep.points()
    assert len(points) == 2 * 3 * 3
    assert {p.seed for p in points} == {0, 1, 2}
    assert {p.scenario.guests[0].workload.hold.mean_ns for p in points} == {100, 400, 1600}
    assert len({p.key for p in points}) == len(points)


def test_dotted_scenario_path_is_a_parameter():
    sweep = build_sweep(["host.costs.kick_wake_ns=1000,2000"], "pvqspinlock", 1, overrides=TINY)
    assert [p.scenario.host.costs.kick_wake_ns for p in sweep.points()] == [1000, 2000]


def test_files_summary_and_plots(tmp_path):
    summary = run_sweep(tiny_sweep(), tmp_path, jobs=1, log=quiet)
    rows = list(csv.DictReader((tmp_path / "points.csv").open()))
    assert len(rows) == 8
    assert {r["lock"] for r in rows} == {"qspinlock", "virt-tas"}
    assert all(int(r["acquisitions"]) > 0 and r["fail"] == "0" for r in rows)
    assert len((tmp_path / "points.jsonl").read_text().splitlines()) == 8
    aggregate = json.loads((tmp_path / "summary.json").read_text())["aggregate"]
    assert aggregate == summary["aggregate"] and len(aggregate) == 4
    entry = aggregate[0]
    assert entry["seeds"] == 2 and entry["throughput"]["min"] <= entry["throughput"]["mean"] <= entry["throughput"]["max"]
    from pvspin.sim.plots import plot_sweep

    written = plot_sweep(summary, tmp_path)
    assert {p.name for p in written} >= {"throughput.png", "throughput.svg", "fairness.png", "fairness.svg"}
    assert all(p.stat().st_size > 1000 for p in written)
    assert (tmp_path / "throughput.png").read_bytes()[:4] == b"\x89PNG"


def test_parallel_and_serial_runs_write_the_same_files(tmp_path):
    run_sweep(tiny_sweep(), tmp_path / "serial", jobs=1, log=quiet)
    run_sweep(tiny_sweep(), tmp_path / "parallel", jobs=2, log=quiet)
    for name in ("points.csv", "points.jsonl", "summary.json"):
        assert (tmp_path / "serial" / name).read_text() == (tmp_path / "parallel" / name).read_text()


def _measure_in_a_worker_that_dies(scenario_json):
    """``measure``, in a worker process killed (SIGKILL) before its first point, or before every one."""
    marker = Path(os.environ["PVSPIN_TEST_DEATH"])
    if marker.name == "always":
        os.kill(os.getpid(), signal.SIGKILL)
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))  # the first point of the whole sweep only
    except FileExistsError:
        return measure(scenario_json)
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("not reached")


def test_a_killed_worker_process_is_replaced_and_its_points_run_again(tmp_path, monkeypatch):
    run_sweep(tiny_sweep(), tmp_path / "calm", jobs=2, log=quiet)
    monkeypatch.setattr(sweep_module, "measure", _measure_in_a_worker_that_dies)
    monkeypatch.setenv("PVSPIN_TEST_DEATH", str(tmp_path / "died"))
    log = []
    run_sweep(tiny_sweep(), tmp_path / "killed", jobs=2, log=log.append)
    assert (tmp_path / "died").exists()
    assert any(line.startswith("a worker process died: ") and "retry 1 of 5" in line for line in log), log
    assert sum(1 for line in log if line.startswith("[")) == 8  # every point recorded once
    for name in ("points.csv", "points.jsonl", "summary.json"):
        assert (tmp_path / "killed" / name).read_text() == (tmp_path / "calm" / name).read_text()


def test_workers_that_keep_dying_end_the_sweep_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_module, "measure", _measure_in_a_worker_that_dies)
    monkeypatch.setenv("PVSPIN_TEST_DEATH", str(tmp_path / "always"))
    with pytest.raises(WorkersLost) as caught:
        run_sweep(tiny_sweep(), tmp_path / "out", jobs=2, log=quiet)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("a worker process died 6 times; 8 of 8 point(s) unfinished")


def test_interrupted_sweep_resumes_without_redoing_finished_points(tmp_path):
    full = tmp_path / "full"
    run_sweep(tiny_sweep(), full, jobs=1, log=quiet)
    part = tmp_path / "part"
    part.mkdir()
    lines = (full / "points.jsonl").read_text().splitlines()
    # three finished points and half a line, as a killed sweep leaves them
    (part / "points.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:40])
    log = []
    run_sweep(tiny_sweep(), part, jobs=1, log=log.append)
    assert log[0] == f"resuming: 3 of 8 points already in {part}"
    assert sum(1 for line in log if line.startswith("[")) == 5
    assert (part / "points.csv").read_text() == (full / "points.csv").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (("--param", "overcommit=1,x"), "--param overcommit: 'x' is not a number"),
        (("--param", "warp=1,2"), "--param 'warp': not a parameter"),
        (("--param", "overcommit"), "expected NAME=V1,V2"),
        (("--param", "overcommit=1", "--locks", "mcs"), "unknown lock 'mcs'"),
        (("--param", "overcommit=1", "--seeds", "0"), "--seeds must be at least 1"),
        (("--param", "overcommit=0.1"), "leaves no vCPU"),
        (("--param", "vcpus=2.5"), "--param vcpus 2.5"),
        (("--param", "overcommit=2", "--host", "baremetal", "--locks", "qspinlock"), "bare metal runs one CPU"),
        (("--param", "overcommit=1", "--scenario", "/nonexistent.toml"), "no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    out = subprocess.run(
        [sys.executable, "-m", "pvspin", "sweep", "--out", str(tmp_path / "r"), "--duration-ms", "0.1", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: "), out.stderr
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_out_is_bad_input():
    out = subprocess.run([sys.executable, "-m", "pvspin", "sweep", "--param", "overcommit=1"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 2 and "--out" in out.stderr


def test_api_rejects_three_parameters():
    with pytest.raises(BadInput, match="at most two"):
        build_sweep(["vcpus=1", "pcpus=2", "hold-ns=3"], None, 1)


def test_command_writes_results_and_plots(tmp_path):
    out = tmp_path / "r"
    args = ["sweep", "--param", "overcommit=1,2", "--locks", "qspinlock,pvqspinlock", "--seeds", "1",
            "--pcpus", "2", "--duration-ms", "0.3", "--jobs", "2", "--out", str(out)]  # fmt: skip
    run = subprocess.run([sys.executable, "-m", "pvspin", *args], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "sweep: 4 points (2 lock(s) x 2 overcommit x 1 seed(s))" in run.stderr
    assert {"points.csv", "points.jsonl", "summary.json", "sweep.json", "throughput.svg", "fairness.png"} <= {
        p.name for p in out.iterdir()
    }
    again = subprocess.run([sys.executable, "-m", "pvspin", *args, "--no-plots"], capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert again.returncode == 0 and "resuming: 4 of 4 points" in again.stderr


def test_a_changed_simulator_invalidates_finished_points(monkeypatch):
    from pvspin.sim import sweep as sweeper

    before = {p.key for p in tiny_sweep().points()}
    monkeypatch.setattr(sweeper, "code_version", lambda: "another-engine")
    after = {p.key for p in tiny_sweep().points()}
    assert before.isdisjoint(after)


def test_a_build_s_completion_time_is_a_column_and_null_for_a_locktorture_run(tmp_path):
    build = {"host": {"pcpus": 2}, "duration_ms": 50,
             "guests": [{"vcpus": 2, "workload": {"kind": "kbuild", "kbuild": {"tasks": 8, "compute_us": 50}}}]}
    summary = run_sweep(build_sweep(["vcpus=2,3"], "qspinlock", 1, overrides=build), tmp_path, jobs=1, log=quiet)
    times = {e["vcpus"]: e["completion_ms"]["mean"] for e in summary["aggregate"]}
    assert set(times) == {2, 3} and all(0 < t < 50 for t in times.values())
    rows = list(csv.DictReader((tmp_path / "points.csv").open()))
    assert [float(r["completion_ms"]) for r in rows] == [times[int(r["vcpus"])] for r in rows]
    plain = run_sweep(tiny_sweep(seeds=1), tmp_path / "plain", jobs=1, log=quiet)
    assert all("completion_ms" not in e for e in plain["aggregate"])  # no build: null, left out of the stats
