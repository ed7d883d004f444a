"""``pvspin litmus --spinlock``: C litmus tests with the kernel's lock code (litmus/spinlock.py).

The reference for every lock-taking catalogue test is herd7's own output under the LKMM
(``NAME.litmus.expected``), read here, not pvspin's.  What the real lock changes is derived
by hand in each test's comment, from the lock's code (an acquire RMW to take it, a release
store to the locked byte to drop it) and the model's axioms; ``docs/spinlock-vs-lkmm.md``
gives the same reasoning at length.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from litmus_helpers import LITMUS_DIR, SB_X86, suite
from pvspin.cli import app
from pvspin.litmus import load
from pvspin.litmus.command import execute
from pvspin.litmus.run import judge
from pvspin.litmus.spinlock import KernelLock, run
from pvspin.litmus.test import format_state

CATALOGUE = LITMUS_DIR / "lkmm-catalogue"


def litmus(*args):
    result = CliRunner().invoke(app, ["litmus", *map(str, args)])
    assert "Traceback" not in result.output + result.stderr
    return result


def catalogue(name: str) -> Path:
    """A catalogue test's file; skips the test when the kernel's catalogue is not on this machine."""
    path = CATALOGUE / f"{name}.litmus"
    if not path.is_file():
        pytest.skip(f"{path} not found (set PVSPIN_LITMUS_DIR to the folder holding lkmm-catalogue/)")
    return path


def herd(name: str) -> set[str]:
    """herd7's final states of a catalogue test, as pvspin prints them (``[z]=2;`` is ``z=2;``)."""
    path = catalogue(name)
    lines = Path(f"{path}.expected").read_text().split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("States "))
    return {" ".join(f"{item.strip().replace('[', '').replace(']', '')};" for item in line.split(";") if item.strip())
            for line in lines[at + 1:at + 1 + int(lines[at].split()[1])]}


def states(name: str, spinlock: str, model: str, version: str | None = None) -> set[str]:
    test = load(catalogue(name))
    lock_run = run(test, KernelLock(spinlock, model), model, version)
    assert lock_run.stuck == 0 and lock_run.cut == 0  # every graph is an execution that ends
    inst = test.instance()
    return {format_state(s, inst) for s in judge(test, lock_run.outcomes).states}


# --------------------------------------------------------------------------- the default is unchanged
LOCK_TESTS = ("MP+polocks", "Lock-outside-across", "MP+polockonce+poacquiresilsil", "spinlock-is-locked-self")


@pytest.mark.parametrize("name", LOCK_TESTS)
def test_the_abstract_lock_is_the_default_and_gives_herd_s_states(name):
    expected = herd(name)
    paths = [str(CATALOGUE / f"{name}.litmus")]
    default, abstract = execute(paths, "lkmm", None), execute(paths, "lkmm", None, spinlock="abstract")
    for summary in (default, abstract):
        item = summary.outcomes[0]
        assert {format_state(s, item.test.instance()) for s in item.result.states} == expected
        assert item.lock_run is None
    assert default.spinlock is None and abstract.spinlock.startswith("abstract")
    plain = litmus("--memory-model", "lkmm", *paths)
    assert plain.exit_code == 0 and not plain.output.startswith("spinlock:")  # today's output, no header


# --------------------------------------------------------------------------- the real lock, derived by hand
def test_lock_release_acquire_gives_message_passing_under_every_model():
    # MP+polocks / MP+porevlocks: P1's lock reads P0's unlock (a release) with an acquire, the fast
    # path's cmpxchg or the pending waiter's atomic_cond_read_acquire(): what P0 wrote before the
    # unlock is visible after the lock, so herd's states exactly, under LKMM and ARMv8 alike
    for name in ("MP+polocks", "MP+porevlocks", "Lock-outside-across"):
        for model in ("lkmm", "armv8"):
            assert states(name, "qspinlock", model) == herd(name), (name, model)


def test_spin_is_locked_of_one_s_own_lock():
    # one CPU: the word is 0 before, its own cmpxchg's 1 after the lock (coherence), 0 after the unlock
    for model in ("lkmm", "armv8", "sc"):
        assert states("spinlock-is-locked-self", "qspinlock", model) == {"0:r1=0; 0:r2=1; 0:r3=0;"}


def test_unlock_then_lock_on_one_cpu_is_only_release_then_acquire_under_lkmm():
    # LB+unlocklockonceonce and MP+unlocklockonceonce: lock.cat orders a CPU's critical sections by
    # po-unlock-lock-po; the real unlock is a release write and the next lock an acquire read, and the
    # LKMM does not order a release before a later acquire, so each bad outcome becomes reachable.
    # ARMv8 does ([L]; po; [A] is in bob): herd's states.
    lb, mp = "LB+unlocklockonceonce+poacquireonce", "MP+unlocklockonceonce+fencermbonceonce"
    assert states(lb, "qspinlock", "lkmm") == herd(lb) | {"0:r1=1; 1:r2=1;"}
    assert states(mp, "qspinlock", "lkmm") == herd(mp) | {"1:r1=1; 1:r2=0;"}
    assert states(lb, "qspinlock", "armv8") == herd(lb)
    assert states(mp, "qspinlock", "armv8") == herd(mp)


def test_the_acquire_is_not_a_cumulative_fence_under_lkmm():
    # ISA2+pooncelock+pooncelock+pombonce: lock.cat's po-unlock-lock-po is in cumul-fence, so P0's
    # x=1 propagates to P2 before P1's z=1; the real pair is release-rf-acquire, and LKMM's acquire
    # orders P1's later accesses but propagates nothing, so P2 may see z=1 and then x=0.  ARMv8 is
    # other-multi-copy atomic: the chain is in ob, herd's states.
    name = "ISA2+pooncelock+pooncelock+pombonce"
    assert states(name, "qspinlock", "lkmm") == herd(name) | {"1:r0=1; 2:r1=0; 2:r2=1;"}
    assert states(name, "qspinlock", "armv8") == herd(name)
    # any lock taken by an acquire RMW and dropped by a release store does the same (tests/weak_locks.py)
    ordered = str(Path(__file__).parent / "weak_locks.py") + ":OrderedTas"
    assert states(name, ordered, "lkmm") == herd(name) | {"1:r0=1; 2:r1=0; 2:r2=1;"}


def test_armv8_orders_what_lkmm_leaves_to_the_observer():
    # Z6.0+pooncelock+pooncelock+pombonce: LKMM allows P2's z=2 to overwrite z=1 and still read x=0;
    # on ARMv8 x=1 ->ob (STLR, then CASA) P1's z=1 ->coe z=2 ->DMB x read: that state is gone
    name = "Z6.0+pooncelock+pooncelock+pombonce"
    assert states(name, "qspinlock", "lkmm") == herd(name)
    assert states(name, "qspinlock", "armv8") == herd(name) - {"1:r0=1; 2:r1=0; z=2;"}
    # smp_mb__after_spinlock() is smp_mb() after the acquire on arm64: herd's states with it, both models
    mb = "Z6.0+pooncelock+pooncelock-mb+pombonce"
    assert states(mb, "qspinlock", "lkmm") == herd(mb) == states(mb, "qspinlock", "armv8")


def test_spin_is_locked_may_see_the_lock_free_after_the_critical_section_s_store():
    # MP+polockonce+poacquiresilsil: the lock's RMW write is not ordered before the store in the
    # critical section (acquire orders the read), so under LKMM and ARMv8 the observer may read x=1
    # and then the word 0 then 1: herd's Sometimes.  Under SC the word's write comes first: gone.
    name = "MP+polockonce+poacquiresilsil"
    assert states(name, "qspinlock", "lkmm") == herd(name) == states(name, "qspinlock", "armv8")
    assert states(name, "qspinlock", "sc") == herd(name) - {"1:r1=1; 1:r2=0; 1:r3=1;"}
    # with smp_mb__after_spinlock() (smp_mb() on arm64) the word's write is ordered first: herd's Never
    mb = "MP+polockmbonce+poacquiresilsil"
    assert states(mb, "qspinlock", "lkmm") == herd(mb) == states(mb, "qspinlock", "armv8")


def test_the_lock_s_words_are_not_in_the_final_state():
    test = load(catalogue("MP+polocks"))
    inst = test.instance(KernelLock("qspinlock", "lkmm"))
    assert set(inst.locks) == {"mylock"} and "mylock" not in inst.refs
    assert [var.name for var, _ in next(iter(run(test, KernelLock("qspinlock", "lkmm"), "lkmm").outcomes))] == \
        [var.name for var in test.observed] == ["r0", "r1"]
    # the test's locations keep their addresses (a pointer value compares across the two locks)
    plain = test.instance()
    assert {n: r.addr for n, r in inst.refs.items()} == {n: r.addr for n, r in plain.refs.items() if n != "mylock"}


SELF_DEADLOCK = """C self-deadlock
{}
P0(spinlock_t *s, int *x) { spin_lock(s); spin_lock(s); WRITE_ONCE(*x, 1); spin_unlock(s); }
P1(int *x) { int r0 = READ_ONCE(*x); }
exists (1:r0=1)
"""

PLAIN_SPIN = '''
from pvspin.machine.memory import CACHE_LINE, Layout
from pvspin.machine.ops import READ_ONCE, cmpxchg_acquire, smp_store_release

WORD = Layout("plain_word", 4, [("val", 0, 4)])


class PlainSpin:
    def __init__(self, mem, ncpus):
        self.mem = mem

    def alloc_lock(self, name):
        return self.mem.alloc(WORD, name, align=CACHE_LINE)

    def spin_lock(self, lock):
        while True:
            while (yield READ_ONCE(lock.val)) != 0:  # a loop of plain reads: no await, cut at the loop bound
                pass
            if (yield cmpxchg_acquire(lock.val, 0, 1)) == 0:
                return

    def spin_unlock(self, lock):
        yield smp_store_release(lock.val, 0)


class NotALock:
    def __init__(self, mem, ncpus):
        pass
'''


def test_a_deadlock_is_reported_not_dropped(tmp_path):
    # the second spin_lock() of a held lock: queued_spin_lock_slowpath() sets pending and waits for
    # the locked byte to clear, which only the CPU that waits would do
    path = tmp_path / "self-deadlock.litmus"
    path.write_text(SELF_DEADLOCK)
    result = litmus("--memory-model", "lkmm", "--spinlock", "qspinlock", path)
    assert result.exit_code == 0
    assert "States 0" in result.output and "0 executions, 1 stuck" in result.output
    assert "stuck (a CPU spins forever; the first): cpu0 waits forever in smp_cond_load_acquire(s.val)" in result.output
    assert "States 0" in litmus("--memory-model", "lkmm", path).output  # lock.cat: no execution either


def test_a_cut_spin_is_reported(tmp_path):
    lock = tmp_path / "plain_spin.py"
    lock.write_text(PLAIN_SPIN)
    if not (CATALOGUE / "MP+polocks.litmus").is_file():
        pytest.skip("catalogue not found")
    result = litmus("--memory-model", "lkmm", "--spinlock", f"{lock}:PlainSpin", CATALOGUE / "MP+polocks.litmus")
    assert result.exit_code == 0
    line = next(line for line in result.output.splitlines() if line.startswith("run: "))
    assert " 0 cut at the loop bound" not in line and "bounded: the final states are those of the executions" in \
        result.output


def test_the_header_says_which_lock_code_ran():
    if not (CATALOGUE / "MP+polocks.litmus").is_file():
        pytest.skip("catalogue not found")
    out = litmus("--memory-model", "lkmm", "--spinlock", "qspinlock", CATALOGUE / "MP+polocks.litmus").output
    first = out.splitlines()[0]
    assert first.startswith("spinlock: qspinlock (kernel/locking/qspinlock.c; NR_CPUS < 16K layout")
    assert "whole-word lock word for lkmm" in first and "pending_loops=2" in first
    armv8 = litmus("--memory-model", "armv8", "--spinlock", "qspinlock", CATALOGUE / "MP+polocks.litmus").output
    assert "whole-word lock word for lkmm" not in armv8.splitlines()[0]


@pytest.mark.slow
def test_pvqspinlock_under_armv8_gives_message_passing():
    # the PV lock verifies 2 x 1 under ARMv8 (pvspin check): the same release-acquire hand-over
    assert states("MP+polocks", "pvqspinlock", "armv8") == herd("MP+polocks")


# --------------------------------------------------------------------------- the comparison
def _lock_tests() -> set[str]:
    """The catalogue tests that call a spin_*() function, by their text."""
    return {p.stem for p in suite("lkmm-catalogue") if "spin_" in p.read_text()}


# what the reasoning above derives, test by test (the others agree)
DIFFERENCES = {
    "lkmm": {"ISA2+pooncelock+pooncelock+pombonce": "weaker", "LB+unlocklockonceonce+poacquireonce": "weaker",
             "MP+unlocklockonceonce+fencermbonceonce": "weaker"},
    "armv8": {"Z6.0+pooncelock+pooncelock+pombonce": "stronger"},
}


@pytest.mark.parametrize("model", ["lkmm", "armv8"])
def test_compare_abstract_on_the_catalogue(model):
    lock_tests = _lock_tests()
    result = litmus(str(CATALOGUE), "--memory-model", model, "--spinlock", "qspinlock", "--compare-abstract", "--json")
    assert result.exit_code == (1 if "weaker" in DIFFERENCES[model].values() else 0), result.stderr
    report = json.loads(result.stdout)
    relations = {Path(r["test"]).stem: r["relation"] for r in report["results"]}
    assert set(relations) == lock_tests and report["take_a_lock"] == len(lock_tests)
    assert {n: r for n, r in relations.items() if r != "agree"} == DIFFERENCES[model]
    assert report["agree"] == len(lock_tests) - len(DIFFERENCES[model]) and report["not_compared"] == 0
    assert report["reference"] == "lkmm current"
    for r in report["results"]:  # the abstract side is herd's, state for state
        assert {s["state"] for s in r["abstract"]["states"]} == herd(Path(r["test"]).stem)
    text = litmus(str(CATALOGUE), "--memory-model", model, "--spinlock", "qspinlock", "--compare-abstract").output
    assert f"of the {len(lock_tests)}: {report['agree']} agree, {report['differ']} differ" in text
    for name, relation in DIFFERENCES[model].items():
        assert f"DIFFER, {relation}" in next(line for line in text.splitlines() if name in line)


@pytest.mark.slow
def test_compare_abstract_under_lkmm_v00_differs_where_current_does():
    lock_tests = _lock_tests()  # skips without the catalogue
    result = litmus(str(CATALOGUE), "--memory-model", "lkmm", "--lkmm-version", "v00", "--spinlock", "qspinlock",
                    "--compare-abstract", "--json")
    report = json.loads(result.stdout)
    assert report["take_a_lock"] == len(lock_tests)
    assert {Path(r["test"]).stem: r["relation"] for r in report["results"] if r["relation"] != "agree"} == \
        DIFFERENCES["lkmm"]


# --------------------------------------------------------------------------- bad input
def _refused(result, value: str):
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert result.stderr.startswith(f"error: --spinlock {value}") and result.stderr.count("\n") == 1, result.stderr


def test_bad_spinlock_values_are_refused_in_one_line(tmp_path):
    c_test = tmp_path / "self-deadlock.litmus"
    c_test.write_text(SELF_DEADLOCK)
    lock = tmp_path / "plain_spin.py"
    lock.write_text(PLAIN_SPIN)
    _refused(litmus("--memory-model", "lkmm", "--spinlock", "mcs", c_test), "'mcs'")
    _refused(litmus("--memory-model", "lkmm", "--spinlock", f"{tmp_path}/nowhere.py:Lock", c_test),
             f"'{tmp_path}/nowhere.py:Lock': no such file")
    _refused(litmus("--memory-model", "lkmm", "--spinlock", f"{lock}:Missing", c_test), f"'{lock}:Missing'")
    _refused(litmus("--memory-model", "lkmm", "--spinlock", f"{lock}:NotALock", c_test), f"'{lock}:NotALock'")
    assert "has no method alloc_lock()" in litmus("--memory-model", "lkmm", "--spinlock", f"{lock}:NotALock",
                                                  c_test).stderr


def test_spinlock_with_an_assembly_test_is_refused(tmp_path):
    asm = tmp_path / "sb.litmus"
    asm.write_text(SB_X86)
    for value, model in (("qspinlock", "tso"), ("abstract", "sc"), ("pvqspinlock", "armv8")):
        result = litmus("--memory-model", model, "--spinlock", value, asm)
        _refused(result, value)
        assert "X86 test" in result.stderr


def test_compare_abstract_needs_a_real_lock_and_no_csv(tmp_path):
    c_test = tmp_path / "self-deadlock.litmus"
    c_test.write_text(SELF_DEADLOCK)
    for args in (["--compare-abstract"], ["--spinlock", "abstract", "--compare-abstract"],
                 ["--spinlock", "qspinlock", "--compare-abstract", "--expect", tmp_path / "x.csv"],
                 ["--spinlock", "qspinlock", "--engine", "interleaving", "--memory-model", "sc"]):
        result = litmus("--memory-model", "lkmm", c_test, *args) if "--memory-model" not in args else \
            litmus(c_test, *args)
        assert result.exit_code == 2 and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, \
            (args, result.stderr)
