"""Sweeps and checks on a real Ray cluster: a head and two one-CPU worker nodes on this machine.

The fixture starts the cluster (ray.cluster_utils: each node its own raylet and worker
processes) and stops it; the commands reach it by its address, as on a multi-node cluster.
A worker killed mid-point (sweep) or mid-search (check) costs time, not the result.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from pvspin.check import partitioned  # noqa: E402
from pvspin.check.bugs import EXPOSURES  # noqa: E402
from pvspin.check.runner import CheckOptions, run  # noqa: E402
from pvspin.parallel import RayPool  # noqa: E402

pytestmark = pytest.mark.slow

RESULTS = ("points.csv", "points.jsonl", "summary.json", "sweep.json")


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    # a driver in another process finds its raylet by this machine's address: the nodes keep it
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        nodes.add_node(num_cpus=1)
    nodes.wait_for_nodes()
    yield nodes.address
    nodes.shutdown()


def pvspin(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pvspin", *args], capture_output=True, text=True, **kw)


def sweep_args(out: Path, *extra: str) -> tuple:
    return ("sweep", "--param", "hold-ns=100,400", "--seeds", "2", "--duration-ms", "0.5", "--pcpus", "2",
            "--no-plots", "--out", str(out), *extra)


def same_files(a: Path, b: Path) -> bool:
    return all((a / name).read_bytes() == (b / name).read_bytes() for name in RESULTS)


def test_a_sweep_on_the_cluster_writes_the_local_sweeps_files(cluster, tmp_path):
    local = pvspin(*sweep_args(tmp_path / "local", "--jobs", "1"))
    remote = pvspin(*sweep_args(tmp_path / "ray", "--ray", cluster))
    assert local.returncode == remote.returncode == 0, remote.stderr
    assert same_files(tmp_path / "local", tmp_path / "ray")
    assert remote.stderr.count("] pvqspinlock hold-ns=") == 4  # progress line by line, as points finish


def ray_task_pids(name: str) -> list[int]:
    """Ray workers running a task of ``name`` (Ray titles the process ``ray::NAME`` meanwhile)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.startswith(f"ray::{name}".encode()):
                pids.append(int(entry.name))
    return pids


def test_a_point_whose_worker_is_killed_is_run_again(cluster, tmp_path):
    args = ("sweep", "--param", "hold-ns=100,400", "--seeds", "1", "--duration-ms", "8", "--pcpus", "2", "--no-plots")
    sweep = subprocess.Popen([sys.executable, "-m", "pvspin", *args, "--out", str(tmp_path / "ray"), "--ray", cluster],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    while killed is None and sweep.poll() is None:
        pids = ray_task_pids("measure")
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed = pids[0]
        time.sleep(0.05)
    _, err = sweep.communicate(timeout=600)
    assert killed is not None and sweep.returncode == 0, err
    local = pvspin(*args, "--out", str(tmp_path / "local"), "--jobs", "1")
    assert local.returncode == 0
    assert same_files(tmp_path / "local", tmp_path / "ray")


def test_a_check_on_the_cluster(cluster):
    out = pvspin("check", "--lock", "qspinlock", "--cpus", "3", "--ray", cluster)
    assert out.returncode == 0, out.stderr
    assert f"VERIFIED: {run(CheckOptions(lock='qspinlock', cpus=3)).result.states} states" in out.stdout


def test_a_swarm_on_the_cluster_reports_the_sequential_run(cluster):
    opts = EXPOSURES["pv-kick-node-no-barrier"].options("pv-kick-node-no-barrier")
    from dataclasses import replace

    from pvspin.check.command import command_line

    opts = replace(opts, strategy="random", runs=200, seed=3)
    seq = run(opts)
    out = pvspin(*command_line(opts, search=True).split()[1:], "--ray", cluster)
    assert out.returncode == {"violation": 1, "incomplete": 3}[seq.result.verdict], out.stderr
    assert seq.replay is None or f"--replay {seq.replay}" in out.stdout


def test_a_check_whose_worker_is_killed_completes(cluster):
    opts = CheckOptions(lock="ticket", cpus=4, acquisitions=2, symmetry="none")
    killed = []

    def kill_once(pool):
        if not killed:
            pid = pool.call(0, "pid").result()
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    pool = RayPool(cluster)
    try:
        result = partitioned.explore(opts, 2, pool, on_step=kill_once)
    finally:
        pool.shutdown()
    assert killed and result.verdict == "verified"
    assert result.states == run(opts).result.states


def test_workers_import_their_own_pvspin_where_it_is_the_drivers(cluster):
    pool = RayPool(cluster)  # the nodes run this checkout: nothing to ship
    try:
        assert not pool.shipped
        assert pool.submit(os.getpid).result() != os.getpid()
    finally:
        pool.shutdown()


def test_a_worker_with_other_code_fails_the_run_in_one_line(cluster, monkeypatch):
    from pvspin import parallel

    monkeypatch.setattr(parallel, "_fingerprint", "0" * 64)  # the driver's digest is now no node's
    pool = RayPool(cluster)
    try:
        assert pool.shipped  # the probe saw it; the shipped package's own digest is still not the driver's
        with pytest.raises(parallel.CodeMismatch, match="runs other pvspin code than the driver"):
            pool.submit(os.getpid).result()
    finally:
        pool.shutdown()
