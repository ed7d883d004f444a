"""What the check command prints: counterexamples, JSON, the corpus, and errors on bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pvspin.check.report import decode_word
from pvspin.cli import app
from pvspin.kernel.qspinlock import qspinlock_types

ROOT = Path(__file__).resolve().parent.parent
BROKEN = "examples/user_lock.py:BrokenTasLock"

EXPECTED_BROKEN = """\
pvspin check: examples/user_lock.py:BrokenTasLock, 2 CPU(s) x 1 acquisition(s), SC, exhaustive, no symmetry or ample sets (the lock declares none)
VIOLATION of mutual-exclusion: {stats}
counterexample: 4 steps, 2 preemptions
   1  cpu0/task    spin_lock user_lock.py:49                    READ_ONCE(lock0.locked): read 0
   2  cpu1/task    spin_lock user_lock.py:49                    READ_ONCE(lock0.locked): read 0
   3  cpu1/task    spin_lock user_lock.py:50                    WRITE_ONCE(lock0.locked, 0x1)   [lock0 = 0x1]
   4  cpu0/task    spin_lock user_lock.py:50                    WRITE_ONCE(lock0.locked, 0x1)
  !!  mutual-exclusion: cpu0 entered the critical section of lock0 held by cpu1
replay: pvspin check --lock examples/user_lock.py:BrokenTasLock --cpus 2 --acquisitions 1 --memory-model sc --replay {token}"""


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["check", *args])


def test_counterexample_text_is_pinned(cli):
    out = cli("--lock", BROKEN, "--cpus", "2")
    assert out.exit_code == 1
    lines = out.stdout.rstrip("\n").split("\n")
    stats = lines[1].split(": ", 1)[1]
    token = lines[-1].rsplit(" ", 1)[1]
    assert out.stdout.rstrip("\n") == EXPECTED_BROKEN.format(stats=stats, token=token)


def test_json_has_the_fields_scripts_rely_on(cli):
    out = cli("--lock", BROKEN, "--cpus", "2", "--json")
    data = json.loads(out.stdout)
    assert data["verdict"] == "violation" and data["property"] == "mutual-exclusion"
    assert {"executions", "seconds", "replay", "steps", "states"} <= data.keys()
    assert data["steps"][-1]["cpu"] == 0 and "WRITE_ONCE" in data["steps"][-1]["action"]
    ok = json.loads(cli("--lock", "ticket", "--cpus", "2", "--json").stdout)
    assert ok["verdict"] == "verified" and ok["replay"] is None


def test_qspinlock_steps_show_the_lock_word_as_tail_pending_locked(cli):
    data = json.loads(cli("--lock", "pvqspinlock", "--cpus", "2", "--bug", "pv-wait-no-latch", "--json").stdout)
    words = [s["lock_word"] for s in data["steps"] if s["lock_word"]]
    assert "lock0 = (0,0,1)" in words and "lock0 = (cpu1/idx0,0,3)" in words
    assert data["steps"][-1]["action"] == "halt: the vCPU sleeps"


def test_values_are_spelled_as_what_they_are_pointers_and_lock_words(cli):
    """A pointer stored into a node prints as the load of it does (``&qnodes[2][0]``), and every value
    read from, written to or compared with a lock word is decoded, never a bare number."""
    out = cli("--lock", "qspinlock", "--cpus", "3", "--acquisitions", "2", "--bug", "pending-after-tail")
    steps = [line for line in out.stdout.splitlines() if line[:4].strip().isdigit()]
    links = [s for s in steps if "WRITE_ONCE(qnodes[" in s and ".next, " in s and ".next, 0x0)" not in s]
    assert links and all(".next, &qnodes[" in s for s in links), links
    assert any(".next): read &qnodes[" in s for s in steps)
    on_word = [s for s in steps if "(lock0.val" in s]
    assert len(on_word) >= 10
    for s in on_word:
        assert "read (" in s and "0x" not in s.split("   [")[0], s
    assert any("try_cmpxchg_acquire(lock0.val, (0,0,0), (0,0,1)): read (" in s for s in steps)


def test_decode_word_in_both_layouts():
    q, q16k = qspinlock_types(False), qspinlock_types(True)
    assert decode_word(0x00080101, q) == "(cpu1/idx0,1,1)"
    assert decode_word((2 << 11) | (1 << 9) | 0x100, q16k) == "(cpu1/idx1,1,0)"
    assert decode_word(0, q) == "(0,0,0)"


def test_list_bugs_names_each_bug_with_its_fix(cli):
    out = cli("--list-bugs")
    assert out.exit_code == 0
    for name in ("pv-kick-node-no-barrier", "unbounded-pending-wait", "pv-wait-no-latch"):
        assert name in out.stdout
    assert "59fb586b4a07" in out.stdout


@pytest.mark.parametrize("args,named", [
    (["--cpus", "many"], "--cpus 'many'"),
    (["--cpus", "0"], "--cpus 0"),
    (["--lock", "mcs"], "--lock 'mcs'"),
    (["--memory-model", "arm"], "--memory-model 'arm'"),
    (["--strategy", "bfs"], "--strategy 'bfs'"),
    (["--bug", "nope"], "--bug 'nope'"),
    (["--knob", "max_nodes=9"], "max_nodes"),
    (["--replay", "AAAA"], "--replay"),
    (["--lock", "nofile.py:X"], "nofile.py"),
])
def test_bad_input_is_one_line_and_exit_code_2(cli, args, named):
    out = cli(*args)
    assert out.exit_code == 2
    err = out.stderr.strip()
    assert "\n" not in err and named in err and "Traceback" not in err


def test_example_readme_shows_the_broken_locks_counterexample():
    readme = (ROOT / "examples" / "README.md").read_text()
    assert "VIOLATION of mutual-exclusion" in readme
    assert os.path.exists(ROOT / "examples" / "user_lock.py")
