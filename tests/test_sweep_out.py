"""A second sweep into an ``--out`` holding a sweep of other arguments is refused, or with
``--force`` replaces it (points, summary and plots); the same sweep again resumes."""

import json
import subprocess
import sys

import pytest

from pvspin.sim.sweep import BadInput, build_sweep, run_sweep

TINY = {"host": {"pcpus": 2}, "duration_ms": 0.2}


def sweep(values="1,2", locks="qspinlock"):
    return build_sweep([f"overcommit={values}"], locks, 1, overrides=TINY)


def quiet(_line):
    pass


def test_other_arguments_are_refused_and_force_replaces(tmp_path):
    run_sweep(sweep(), tmp_path, jobs=1, log=quiet)
    stale = tmp_path / "throughput.png"
    stale.write_bytes(b"an earlier sweep's plot")
    with pytest.raises(BadInput, match="holds a sweep with other arguments .* --force to replace it"):
        run_sweep(sweep("1,3"), tmp_path, jobs=1, log=quiet)
    with pytest.raises(BadInput):
        run_sweep(sweep(locks="virt-tas"), tmp_path, jobs=1, log=quiet)
    assert json.loads((tmp_path / "sweep.json").read_text())["params"][0]["values"] == [1, 2]  # untouched
    run_sweep(sweep("1,3"), tmp_path, jobs=1, log=quiet, force=True)
    assert not stale.exists()
    rows = [json.loads(line) for line in (tmp_path / "points.jsonl").read_text().splitlines()]
    assert sorted(r["overcommit"] for r in rows) == [1, 3]


def test_the_same_sweep_resumes_without_force(tmp_path):
    run_sweep(sweep(), tmp_path, jobs=1, log=quiet)
    lines = []
    run_sweep(sweep(), tmp_path, jobs=1, log=lines.append)
    assert any("resuming: 2 of 2 points" in line for line in lines)


def test_the_command_says_so_in_one_line(tmp_path):
    base = ["sweep", "--pcpus", "2", "--duration-ms", "0.2", "--seeds", "1", "--no-plots", "--out", str(tmp_path)]
    first = subprocess.run([sys.executable, "-m", "pvspin", *base, "--param", "hold-ns=100"], capture_output=True,
                           text=True, timeout=120)  # fmt: skip
    assert first.returncode == 0, first.stderr
    second = subprocess.run([sys.executable, "-m", "pvspin", *base, "--param", "hold-ns=200"], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert second.returncode == 2 and second.stderr.count("\n") == 1 and "--force" in second.stderr
    forced = subprocess.run([sys.executable, "-m", "pvspin", *base, "--param", "hold-ns=200", "--force"],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert forced.returncode == 0, forced.stderr
