"""``pvspin check`` on the execution-graph checker: verdicts, the counterexample, --graph, --json, --replay."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pvspin.cli import app

ROOT = Path(__file__).resolve().parent.parent
ORDERED, RELAXED = "tests/weak_locks.py:OrderedTas", "tests/weak_locks.py:RelaxedTas"


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["check", *args])


@pytest.mark.parametrize("model", ["sc", "tso"])
def test_a_relaxed_lock_is_correct_on_strong_models(cli, model):
    out = cli("--lock", RELAXED, "--memory-model", model, "--strategy", "graph")
    assert out.exit_code == 0, out.output
    assert "VERIFIED" in out.stdout


def test_a_relaxed_lock_loses_an_update_under_armv8(cli, tmp_path):
    dot = tmp_path / "cex.dot"
    out = cli("--lock", RELAXED, "--memory-model", "armv8", "--graph", str(dot))
    assert out.exit_code == 1, out.output
    assert "VIOLATION of final-state" in out.stdout
    assert "lost update" in out.stdout
    # the report says which ordering the relaxed accesses lacked
    assert "would forbid it" in out.stdout
    text = dot.read_text()
    assert text.startswith("digraph execution") and "rf" in text


def test_the_ordered_lock_is_verified_under_armv8(cli):
    out = cli("--lock", ORDERED, "--memory-model", "armv8", "--cpus", "2", "--acquisitions", "2")
    assert out.exit_code == 0, out.output
    assert re.search(r"VERIFIED: \d+ executions", out.stdout)


def test_the_replay_token_rebuilds_the_same_counterexample(cli):
    first = cli("--lock", RELAXED, "--memory-model", "armv8")
    line = next(ln for ln in first.stdout.splitlines() if ln.startswith("replay: "))
    again = cli(*line.split()[3:])
    assert again.exit_code == 1, again.output
    body = lambda text: [ln for ln in text.splitlines() if not ln.startswith(("VIOLATION", "replay"))]  # noqa: E731
    assert body(again.stdout) == body(first.stdout)


def test_a_token_of_another_configuration_is_refused(cli):
    first = cli("--lock", RELAXED, "--memory-model", "armv8")
    token = first.stdout.rsplit("--replay ", 1)[1].strip()
    out = cli("--lock", RELAXED, "--memory-model", "armv8", "--cpus", "3", "--replay", token)
    assert out.exit_code == 2
    assert "error:" in out.stderr and "Traceback" not in out.output


def test_json_names_the_engine_and_the_steps(cli):
    out = cli("--lock", RELAXED, "--memory-model", "armv8", "--json")
    data = json.loads(out.stdout)
    assert data["engine"] == "graph" and data["verdict"] == "violation" and data["property"] == "final-state"
    assert data["steps"] and data["replay"]


@pytest.mark.parametrize("args, message", [
    (("--graph", "x.dot"), "drawings are of execution graphs"),
    (("--memory-model", "armv8", "--graph", "x.png"), "must end in .dot or .svg"),
    (("--memory-model", "armv8", "--graph", "/nonexistent/x.dot"), "no such directory /nonexistent"),
    (("--memory-model", "armv8", "--interrupts", "1"), "interrupts are not modelled"),
    (("--lock", "virt-tas", "--memory-model", "armv8"), "virt_spin_lock() is x86's"),
])
def test_what_the_graph_checker_cannot_do_is_refused_in_one_line(cli, args, message):
    out = cli("--lock", ORDERED, *args)
    assert out.exit_code == 2
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_a_replay_line_of_the_graph_strategy_names_the_engine(cli):
    first = cli("--lock", "examples/user_lock.py:BrokenTasLock", "--strategy", "graph")
    line = next(ln for ln in first.stdout.splitlines() if ln.startswith("replay: "))
    assert "--strategy graph" in line
    again = cli(*line.split()[3:])
    assert again.exit_code == 1 and "VIOLATION" in again.stdout, again.output
