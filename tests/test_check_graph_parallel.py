"""``pvspin check --jobs N`` on the execution-graph checker: the verdict and executions of one process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import replace

import pytest

from pvspin.check.graph import parallel
from pvspin.check.graph import runner as graphs
from pvspin.check.runner import CheckOptions

CASES = [("ticket", 3, 1, "armv8"), ("qspinlock", 2, 1, "armv8"), ("pvqspinlock", 2, 1, "armv8"),
         ("ticket", 2, 2, "lkmm"), ("qspinlock", 2, 1, "sc"), ("ticket", 2, 2, "tso")]


def graph_opts(lock, cpus, k, model, **more) -> CheckOptions:
    return CheckOptions(lock=lock, cpus=cpus, acquisitions=k, memory_model=model, strategy="graph", **more)


@pytest.mark.parametrize("lock,cpus,k,model", CASES)
def test_workers_find_what_one_process_finds(lock, cpus, k, model):
    opts = graph_opts(lock, cpus, k, model)
    one = graphs.run(opts).result
    for jobs in (2, 3):
        par = graphs.run(replace(opts, jobs=jobs)).result
        assert (par.verdict, par.executions) == (one.verdict, one.executions) == ("verified", one.executions)
        assert par.graphs >= one.graphs  # a state two workers took at once counts twice, none is left out


def test_a_violation_found_by_a_worker_is_reported_with_a_token_that_replays_it():
    opts = graph_opts("pvqspinlock", 2, 2, "tso", bugs=("pv-kick-node-no-barrier",))
    report = graphs.run(replace(opts, jobs=2))
    assert report.result.verdict == "violation" and report.result.finding.prop == "lost-wakeup"
    again = graphs.run(replace(opts, replay=report.replay)).result
    assert again.verdict == "violation" and again.finding.prop == "lost-wakeup"


def test_a_worker_killed_mid_run_is_started_again_on_its_share(tmp_path, monkeypatch):
    flag = tmp_path / "killed"
    work = parallel._work

    def dies_once(*args):
        if args[-1] == 0 and not flag.exists():  # forked: the flag file survives the worker
            flag.write_text("")
            os.kill(os.getpid(), signal.SIGKILL)
        work(*args)

    monkeypatch.setattr(parallel, "_work", dies_once)
    opts = graph_opts("ticket", 3, 1, "armv8")
    par = graphs.run(replace(opts, jobs=2)).result
    assert flag.exists()
    assert (par.verdict, par.executions) == ("verified", graphs.run(opts).result.executions)


def test_the_graph_limit_is_shared_by_the_workers():
    r = graphs.run(graph_opts("qspinlock", 2, 2, "armv8", max_states=2000, jobs=2)).result
    assert r.verdict == "incomplete" and "graph limit" in r.note and r.graphs < 4000


def test_check_jobs_runs_the_graph_checker_on_several_processes():
    out = subprocess.run([sys.executable, "-m", "pvspin", "check", "--lock", "ticket", "--cpus", "3",
                          "--memory-model", "armv8", "--jobs", "2"], capture_output=True, text=True)
    assert out.returncode == 0 and "VERIFIED: 84 executions" in out.stdout, out.stdout + out.stderr


def test_the_time_limit_reports_what_the_workers_explored():
    """The deadline stops the driver once; its report joins the workers' counts (it printed none before)."""
    out = subprocess.run([sys.executable, "-m", "pvspin", "check", "--lock", "qspinlock", "--cpus", "3",
                          "--memory-model", "armv8", "--jobs", "2", "--max-seconds", "3"],
                         capture_output=True, text=True)
    assert out.returncode == 3, out.stdout + out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith("INCOMPLETE"))
    assert "stopped at the time limit (3 s)" in line and "before any result" not in line
    executions = int(line.split(": ", 1)[1].split()[0])
    assert executions > 0, line
