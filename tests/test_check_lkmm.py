"""``pvspin check --memory-model lkmm``: the kernel's locks under the Linux-kernel memory model, by version."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pvspin.check.graph import runner as graphs
from pvspin.check.runner import CheckOptions
from pvspin.cli import app

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["check", *args])


@pytest.mark.parametrize("version", ["v00", "v01", "current"])
def test_the_whole_word_qspinlock_verifies_with_two_cpus(version):
    report = graphs.run(CheckOptions(lock="qspinlock-16k", cpus=2, memory_model="lkmm", lkmm_version=version))
    assert report.result.verdict == "verified"
    assert report.result.executions > 0


def test_a_relaxed_lock_loses_an_update_under_lkmm_and_the_report_names_the_version(cli):
    out = cli("--lock", "tests/weak_locks.py:RelaxedTas", "--memory-model", "lkmm", "--lkmm-version", "v01")
    assert out.exit_code == 1, out.output
    assert "LKMM v01, execution graphs" in out.stdout and "VIOLATION of final-state" in out.stdout
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("replay: "))
    assert "--lkmm-version v01" in line
    again = cli(*line.split()[3:])
    assert again.exit_code == 1, again.output


def test_the_ordered_lock_verifies_under_lkmm(cli):
    out = cli("--lock", "tests/weak_locks.py:OrderedTas", "--memory-model", "lkmm", "--acquisitions", "2")
    assert out.exit_code == 0, out.output


@pytest.mark.parametrize("args, message", [
    (("--lkmm-version", "v00"), "only with --memory-model lkmm"),
    (("--memory-model", "armv8", "--lkmm-version", "v00"), "only with --memory-model lkmm"),
    (("--memory-model", "lkmm", "--lkmm-version", "v02"), "choose from v00, v01, current"),
    (("--memory-model", "lkmm", "--lock", "virt-tas"), "virt_spin_lock() is x86's"),
])
def test_bad_versions_and_combinations_are_refused_in_one_line(cli, args, message):
    out = cli(*args)
    assert out.exit_code == 2
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_the_unmodified_lock_loses_mutual_exclusion_under_the_lkmm_before_rmw_sequences():
    """v00: the unlock's release reaches the next owner's acquire only through another CPU's relaxed
    xchg_tail RMW, which carried no ordering before rmw-sequences; the critical sections overlap."""
    report = graphs.run(CheckOptions(lock="qspinlock-16k", cpus=3, memory_model="lkmm", lkmm_version="v00"))
    assert report.result.verdict == "violation" and report.result.finding.prop == "final-state"
    assert "lost update" in report.result.finding.detail
    functions = {line.function for line in report.lines}
    assert "xchg_tail" in functions
