"""User locks are checked as the named ones are, by what they declare (kernel/declarations.py).

A subclass of a kernel lock inherits its class's declarations -- lock-word layout, the kinds
of values that name CPUs, knobs -- so it gets the same symmetry, ample sets, shrunk
constants and decoded lock word, and explores exactly the named lock's states.  A lock that
declares nothing gets no reduction and is told so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pvspin.check.harness import BadInput, make_setup
from pvspin.check.runner import CheckOptions, build_world, run
from pvspin.cli import app
from pvspin.kernel.declarations import CPU, UNDECLARED, WORD, LockDeclarations
from pvspin.kernel.qspinlock import QSpinlock

ROOT = Path(__file__).resolve().parent.parent
DERIVED = "tests/derived_locks.py"
TAS = "examples/user_lock.py:TasLock"


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the locks are named by relative paths, as a user types them


@pytest.fixture
def cli():
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["check", *args])


def states(lock: str, **config) -> tuple[str, int, int]:
    r = run(CheckOptions(lock=lock, **config)).result
    return r.verdict, r.states, r.transitions


@pytest.mark.parametrize("lock", ["NativeXchgTail", "NativeNewLocalDeclared"])
def test_a_qspinlock_subclass_explores_exactly_the_named_locks_states(lock):
    config = dict(cpus=3, acquisitions=2, memory_model="sc")
    named = states("qspinlock", **config)
    assert named[0] == "verified"
    assert states(f"{DERIVED}:{lock}", **config) == named


@pytest.mark.parametrize("memory_model", ["sc", "tso"])
def test_a_pvqspinlock_subclass_explores_exactly_the_named_locks_states(memory_model):
    config = dict(cpus=3, acquisitions=1, memory_model=memory_model)
    assert states(f"{DERIVED}:PvTrylock", **config) == states("pvqspinlock", **config)


def test_a_subclass_gets_the_bugs_and_the_decoded_lock_word(cli):
    args = ("--cpus", "3", "--acquisitions", "2", "--bug", "pending-after-tail", "--json")
    named = json.loads(cli("--lock", "qspinlock", *args).stdout)
    derived = json.loads(cli("--lock", f"{DERIVED}:PendingAfterTail", *args).stdout)
    assert derived["property"] == named["property"] == "mutual-exclusion"  # the two owners: preemption.PREFERENCE
    assert (derived["states"], derived["steps"]) == (named["states"], named["steps"])
    words = [s["lock_word"] for s in derived["steps"] if s["lock_word"]]
    assert words and all(w.startswith("lock0 = (") for w in words)  # (tail, pending, locked), not hex


def test_an_override_with_a_new_integer_local_is_refused_under_full_symmetry():
    with pytest.raises(BadInput, match=r"local 'shift' of NativeNewLocal.xchg_tail .*DECLARED"):
        run(CheckOptions(lock=f"{DERIVED}:NativeNewLocal", cpus=3))
    assert run(CheckOptions(lock=f"{DERIVED}:NativeNewLocal", cpus=3, symmetry="start")).result.verdict == "verified"


def test_an_override_takes_the_kinds_of_the_method_it_overrides():
    setup = make_setup(f"{DERIVED}:NativeXchgTail", 2, 1)
    assert setup.declared.locals["NativeXchgTail.xchg_tail"] == QSpinlock.DECLARED.locals["QSpinlock.xchg_tail"]


def test_an_undeclared_lock_gets_no_reduction_and_says_so(cli):
    for lock in (TAS, f"{DERIVED}:native_by_function"):  # a function declares nothing, whatever it builds
        setup = make_setup(lock, 3, 1)
        assert setup.declared == UNDECLARED and setup.symmetric == 0 and setup.config is None
        assert not build_world(CheckOptions(lock=lock, cpus=2))._ample.objects_rule
    out = cli("--lock", TAS, "--cpus", "3", "--acquisitions", "2", "--memory-model", "tso")
    assert out.exit_code == 0 and "VERIFIED" in out.stdout
    assert "no symmetry or ample sets (the lock declares none)" in out.stdout.splitlines()[0]
    broken = json.loads(cli("--lock", "examples/user_lock.py:BrokenTasLock", "--cpus", "2", "--json").stdout)
    assert (broken["property"], broken["declared"], broken["symmetry"]) == ("mutual-exclusion", False, "none")


def test_the_header_names_the_shrunk_constants(cli):
    head = cli("--lock", "pvqspinlock", "--cpus", "2").stdout.splitlines()[0]
    assert head.endswith(", with pending_loops=2 spin_threshold=2 pv_prev_check_mask=1")
    head = cli("--lock", "qspinlock", "--cpus", "2", "--knob", "max_nodes=1").stdout.splitlines()[0]
    assert head.endswith(", with pending_loops=2 max_nodes=1")  # only what qspinlock reads
    assert ", with" not in cli("--lock", "ticket", "--cpus", "2").stdout.splitlines()[0]
    data = json.loads(cli("--lock", f"{DERIVED}:PvTrylock", "--cpus", "2", "--json").stdout)
    assert data["constants"] == {"pending_loops": 2, "spin_threshold": 2, "pv_prev_check_mask": 1}


def test_a_lock_that_declares_knobs_is_given_the_config():
    setup = make_setup(f"{DERIVED}:SymmetricTas", 3, 1, config_overrides={"spin_threshold": 2},
                       knobs={"spin_threshold": 5})
    assert setup.lock.spin_threshold == 5 and setup.constants == {"spin_threshold": 5}
    assert setup.symmetric == 0b111


@pytest.mark.parametrize("lock, knob, says", [
    (TAS, "spin_threshold=3", "--knob spin_threshold: the examples/user_lock.py:TasLock lock takes no LockConfig"),
    ("qspinlock", "spin_threshold=3", "--knob spin_threshold: the qspinlock lock does not read it"),
    ("ticket", "max_nodes=1", "--knob max_nodes: the ticket lock does not read it (it reads: none)"),
    (f"{DERIVED}:SymmetricTas", "max_nodes=1", f"--knob max_nodes: the {DERIVED}:SymmetricTas lock does not read it "
                                             "(it reads: spin_threshold)"),
])  # fmt: skip
@pytest.mark.parametrize("engine", [(), ("--strategy", "graph")])
def test_a_knob_the_lock_does_not_read_is_refused(cli, lock, knob, says, engine):
    out = cli("--lock", lock, "--cpus", "2", "--knob", knob, *engine)
    err = out.stderr.strip()
    assert out.exit_code == 2 and err.startswith(f"error: {says}") and "\n" not in err


@pytest.mark.parametrize("lock, says", [("BadDeclaration", "BadDeclaration.DECLARED"),
                                        ("WordWithoutLayout", "declares word='qspinlock' but has no q")])
def test_a_declaration_the_lock_cannot_honour_is_refused(cli, lock, says):
    out = cli("--lock", f"{DERIVED}:{lock}", "--cpus", "2")
    assert out.exit_code == 2 and says in out.stderr and "\n" not in out.stderr.strip()


def test_declarations_are_validated_where_they_are_written():
    with pytest.raises(ValueError, match="'warp' is not a LockConfig knob"):
        LockDeclarations(knobs={"warp"})
    with pytest.raises(ValueError, match="need word='qspinlock'"):
        LockDeclarations(fields={("mine", "val"): WORD})
    with pytest.raises(ValueError, match="a kind is not one of"):
        LockDeclarations(locals={"f": {"x": 9}})
    assert LockDeclarations(locals={"f": {"cpu": CPU}}).extend(locals={"g": {}}).locals.keys() == {"f", "g"}


def test_the_replay_token_does_not_depend_on_how_the_path_is_spelled(cli, monkeypatch):
    spellings = ["examples/user_lock.py", "./examples/user_lock.py", str(ROOT / "examples" / "user_lock.py")]
    tokens = {cli("--lock", f"{s}:BrokenTasLock", "--cpus", "2").stdout.split()[-1] for s in spellings}
    monkeypatch.chdir(ROOT / "examples")
    tokens.add(cli("--lock", "user_lock.py:BrokenTasLock", "--cpus", "2").stdout.split()[-1])
    assert len(tokens) == 1
    replay = cli("--lock", "../examples/user_lock.py:BrokenTasLock", "--cpus", "2", "--replay", tokens.pop())
    assert replay.exit_code == 1 and "VIOLATION of mutual-exclusion" in replay.stdout
