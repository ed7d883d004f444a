"""Bad input to every subcommand and to the scenario file: refused in one line, never a traceback.

Each case asserts the exit status (2 for bad input, or the documented status of a finding), one
``error:`` line on stderr naming the bad value, and no "Traceback" anywhere.  The command runs
in-process (typer's runner), so that several hundred cases take seconds.  Cases are generated
from the option tables and the scenario model itself, so a new field or flag is covered too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pvspin.cli import app
from pvspin.sim.command import FLAG_FIELDS
from pvspin.sim.scenario import Scenario
from pvspin.sim.sweep import NAMED_PARAMS

HERE = Path(__file__).resolve().parent
CRASHES = HERE / "guest_crashes" / "locks.py"


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def refused(*args: str, names: str | None = None, code: int = 2):
    """The command exits ``code`` with exactly one ``error:`` line (containing ``names``)."""
    result = invoke(*args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    if names is not None:
        assert names in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------ numbers
NOT_NUMBERS = ("inf", "-inf", "nan", "NaN", "1e308", "1e400", "-1", "x", "", "0x10", "1,5")
RUN_NUMERIC = [flag for flag, (_, kind) in FLAG_FIELDS.items() if kind in (int, float)]


@pytest.mark.parametrize("value", NOT_NUMBERS)
@pytest.mark.parametrize("flag", RUN_NUMERIC)
def test_run_refuses_a_bad_number(flag, value):
    option = "--" + flag.replace("_", "-")
    refused("run", "--duration-ms", "0.1", option, value, names=option)


SWEEP_NUMERIC = ("pcpus", "vcpus", "duration-ms", "hold-ns", "delay-ns", "lock-count", "jobs", "seeds")


@pytest.mark.parametrize("value", NOT_NUMBERS)
@pytest.mark.parametrize("flag", SWEEP_NUMERIC)
def test_sweep_refuses_a_bad_number(tmp_path, flag, value):
    option = f"--{flag}"  # the error names the flag given (--lock-count, not the field's workload.locks)
    refused("sweep", "--out", str(tmp_path / "r"), "--param", "hold-ns=100", option, value, names=option)


@pytest.mark.parametrize("value", ("inf", "-inf", "nan", "1e308", "x", ""))
@pytest.mark.parametrize("name", sorted(NAMED_PARAMS))
def test_sweep_refuses_a_bad_parameter_value(tmp_path, name, value):
    refused("sweep", "--out", str(tmp_path / "r"), "--param", f"{name}=1,{value}", names="--param")


def _numeric_fields(data: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _numeric_fields(value, path + ".")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            out += _numeric_fields(value[0], path + ".0.")
        elif type(value) in (int, float):
            out.append(path)
    return out


SCENARIO_NUMBERS = _numeric_fields(Scenario().model_dump())


def scenario_toml(path: str, literal: str) -> str:
    """A TOML file that sets the dotted field ``path`` (``guests.0.x`` in the first guest) to ``literal``."""
    *tables, key = path.split(".")
    if tables[:2] == ["guests", "0"]:
        rest = tables[2:]
        return "[[guests]]\n" + (f"[guests.{'.'.join(rest)}]\n" if rest else "") + f"{key} = {literal}\n"
    return (f"[{'.'.join(tables)}]\n" if tables else "") + f"{key} = {literal}\n"


@pytest.mark.parametrize("literal", ("inf", "-inf", "nan", "1e308", '"many"', "[1]"))
@pytest.mark.parametrize("field", SCENARIO_NUMBERS)
def test_scenario_file_refuses_a_bad_number(tmp_path, field, literal):
    toml = tmp_path / "s.toml"
    toml.write_text(scenario_toml(field, literal))
    refused("run", "--scenario", str(toml), names=field.rsplit(".", 1)[-1])


@pytest.mark.parametrize("text, names", [
    ("duration_ms = ", "--scenario"),
    ("[host\npcpus = 2", "--scenario"),
    ("warp = 9", "warp"),
    ("guests = 5", "guests"),
    ("guests = [5]", "guests.0"),
    ("[[guests]]\nlock = 'mcs'", "mcs"),
    ("[host]\nhypervisor = 'xen'", "xen"),
    ("[[guests]]\nname = 'a'\n[[guests]]\nname = 'a'", "differ"),
    ("guests = []", "guests"),
    ("seed = 'one'", "seed"),
    ("[[guests]]\nvcpus = 2\n[guests.workload]\nnwriters_stress = 129", "at most 64 writer threads per vCPU"),
    ("[[guests]]\n[guests.workload]\nnwriters_stress = 0", "nwriters_stress"),
    ("[[guests]]\n[guests.workload.guest_sched]\nslice_ms = 0", "slice_ms"),
    ("[[guests]]\n[guests.workload.guest_sched]\nhz = 0", "hz"),
    ("[[guests]]\n[guests.workload.guest_sched]\nswitch_ns = -1", "switch_ns"),
    ("[[guests]]\n[guests.workload.guest_sched]\npreemption = 'rt'", "preemption"),
    ("[[guests]]\n[guests.workload.guest_sched]\nslice_ms = inf", "slice_ms"),
    ("[[guests]]\n[guests.workload]\nkind = 'make'", "kind"),
    ("[[guests]]\n[guests.workload.kbuild]\ntasks = 0", "tasks"),
    ("[[guests]]\n[guests.workload.kbuild]\ncompute_us = 0", "compute_us"),
    ("[[guests]]\n[guests.workload.kbuild]\nlocks_per_task = 0", "locks_per_task"),
    ("[[guests]]\n[guests.workload.kbuild]\nlock_pool = -3", "lock_pool"),
    ("[[guests]]\n[guests.workload.kbuild]\njobs = 0", "jobs"),
    ("[[guests]]\n[guests.workload.kbuild]\ncontended = 1.5", "contended"),
    ("[[guests]]\nvcpus = 1\n[guests.workload]\nkind = 'kbuild'\nkbuild = { jobs = 65 }", "at most 64 job threads"),
    ("[[guests]]\n[guests.workload]\nkind = 'kbuild'\nnwriters_stress = 8", "kbuild.jobs"),
    ("warmup_ms = 1\n[[guests]]\n[guests.workload]\nkind = 'kbuild'", "no warm-up"),
])  # fmt: skip
def test_scenario_file_refuses_bad_content(tmp_path, text, names):
    toml = tmp_path / "s.toml"
    toml.write_text(text)
    refused("run", "--scenario", str(toml), names=names)


def test_scenario_file_that_is_not_utf8_or_not_a_file(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_bytes(b"seed = 1\n\xff\xfe\n")
    refused("run", "--scenario", str(toml), names=str(toml))
    refused("run", "--scenario", str(tmp_path), names="no such file")
    refused("run", "--scenario", "", names="--scenario ''")
    refused("sweep", "--out", str(tmp_path / "r"), "--param", "hold-ns=1", "--scenario", "", names="--scenario ''")


# ------------------------------------------------------------------------------------ guest crashes
# Each user lock in guest_crashes/locks.py fails one way; the part of its message that must show.
RUNTIME_CRASHES = {
    "LockRaises": "ValueError: taken, then lost (in LockRaises.spin_lock",
    "UnlockRaises": "ZeroDivisionError",
    "LockRaisesAtOnce": "RuntimeError: not even a generator (in LockRaisesAtOnce.spin_lock",
    "LockNotGenerator": "LockNotGenerator.spin_lock() returned None, not a generator",
    "LockReturnsInt": "returned 3, not a generator",
    "LockReturnsList": "returned [1, 2], not a generator",
    "YieldsInt": "yielded 5: not an operation",
    "YieldsNone": "yielded None: not an operation",
    "YieldsString": "yielded 'lock': not an operation",
    "YieldsEmptyTuple": "yielded (): not an operation",
    "YieldsUnknownOpcode": "not an operation (no known opcode first)",
    "YieldsNegativeOpcode": "not an operation (no known opcode first)",
    "YieldsBadAddress": "LOAD of 12345, which is not an address",
    "StoresToBadAddress": "STORE of 'lock.val', which is not an address",
    "ShortOperation": "STORE takes 3 operand(s), got 1",
    "CmpxchgNonInt": "CMPXCHG operand 3 is 'one', not an integer",
    "BadPredicate": "AttributeError: 'int' object has no attribute 'nope'",
    "KickNonInt": "PV_KICK operand 1 is 'cpu1', not an integer",
    "OutOfMemory": "MemoryError (in OutOfMemory.spin_lock",
    "Exits": "SystemExit: 3 (in Exits.spin_lock",
    "RecursesForever": "RecursionError",
}
SETUP_CRASHES = {  # before any guest step: the lock cannot be built, which is bad input
    "FactoryRaises": "FactoryRaises(mem, ncpus) failed: RuntimeError: no lock today",
    "factory_returns_int": "has no method alloc_lock()",
    "AllocRaises": "alloc_lock('lock0') failed: KeyError",
    "AllocReturnsInt": "alloc_lock('lock0') returned 7, not a lock in guest memory",
}
IMPORT_CRASHES = {"exits_at_import": "SystemExit: 0", "memoryerror_at_import": "MemoryError"}


@pytest.mark.parametrize("model", ("sc", "tso", "armv8"))
@pytest.mark.parametrize("name", sorted(RUNTIME_CRASHES))
def test_check_reports_a_guest_crash_as_a_violation(name, model):
    result = invoke("check", "--lock", f"{CRASHES}:{name}", "--memory-model", model)
    assert result.exit_code == 1 and result.stderr == "", result.stderr
    assert "VIOLATION of guest-crash" in result.stdout
    (detail,) = [line for line in result.stdout.splitlines() if line.startswith("  !!  guest-crash: ")]
    assert RUNTIME_CRASHES[name] in detail
    assert "replay: pvspin check" in result.stdout


@pytest.mark.parametrize("name", ("LockRaises", "BadPredicate", "YieldsInt"))
@pytest.mark.parametrize("strategy", ("random", "pct", "bounded", "graph"))
def test_every_strategy_reports_a_guest_crash(name, strategy):
    runs = ("--runs", "20") if strategy in ("random", "pct") else ()
    result = invoke("check", "--lock", f"{CRASHES}:{name}", "--strategy", strategy, *runs)
    assert result.exit_code == 1 and "guest-crash" in result.stdout and RUNTIME_CRASHES[name] in result.stdout


@pytest.mark.parametrize("name", ("LockRaises", "BadPredicate", "CmpxchgNonInt"))
def test_a_guest_crash_replays_from_its_token(name):
    first = invoke("check", "--lock", f"{CRASHES}:{name}", "--cpus", "3", "--memory-model", "tso")
    replay = first.stdout.splitlines()[-1].removeprefix("replay: pvspin ").split()
    again = invoke(*replay)
    crash = [line for line in first.stdout.splitlines() if line.startswith("  !!")]
    assert again.exit_code == 1 and crash and [line for line in again.stdout.splitlines() if line.startswith("  !!")] == crash


@pytest.mark.parametrize("name", sorted(RUNTIME_CRASHES))
def test_run_names_the_lock_and_the_crash(name):
    line = refused("run", "--duration-ms", "0.5", "--lock", f"{CRASHES}:{name}", code=1)
    assert f"lock {CRASHES}:{name} crashed in guest0/vcpu" in line and RUNTIME_CRASHES[name] in line


@pytest.mark.parametrize("name", ("LockRaises", "BadPredicate", "KickNonInt"))
@pytest.mark.parametrize("jobs", ("1", "2"))
def test_sweep_names_the_point_and_the_crash(tmp_path, name, jobs):
    result = invoke("sweep", "--out", str(tmp_path / "r"), "--param", "hold-ns=100,200", "--seeds", "1",
                    "--duration-ms", "0.5", "--jobs", jobs, "--no-plots", "--locks", f"qspinlock,{CRASHES}:{name}")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 1 and len(errors) == 1, result.stderr  # after the progress lines of the points done
    line = errors[0]
    assert line.startswith(f"error: point {CRASHES}:{name} hold-ns=") and "seed=0: " in line and RUNTIME_CRASHES[name] in line


@pytest.mark.parametrize("command", ("run", "check", "sweep"))
@pytest.mark.parametrize("name, message", sorted({**SETUP_CRASHES, **IMPORT_CRASHES}.items()))
def test_a_lock_that_cannot_be_built_is_bad_input(tmp_path, command, name, message):
    spec = f"{CRASHES}:{name}" if name in SETUP_CRASHES else f"{HERE / 'guest_crashes' / name}.py:Lock"
    args = {"run": ("run", "--duration-ms", "0.1", "--lock", spec), "check": ("check", "--lock", spec),
            "sweep": ("sweep", "--out", str(tmp_path / "r"), "--param", "hold-ns=1", "--locks", spec)}[command]
    line = refused(*args)
    assert spec in line and message in line


def test_final_state_check_that_raises_is_a_final_state_violation():
    result = invoke("check", "--lock", f"{CRASHES}:FinalStateRaises")
    assert result.exit_code == 1
    assert "final-state: FinalStateRaises.final_state_problems() failed: RuntimeError: cannot tell" in result.stdout


# ------------------------------------------------------------------------------------ sweep resume files
SWEEP = ("sweep", "--param", "hold-ns=100,200", "--seeds", "1", "--duration-ms", "0.1", "--jobs", "1", "--no-plots")


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "r"
    assert invoke(*SWEEP, "--out", str(out)).exit_code == 0
    return out


def _edit_first(text: str, change) -> str:
    rows = [json.loads(line) for line in text.splitlines()]
    change(rows[0])
    return "".join(json.dumps(r) + "\n" for r in rows)


CORRUPTIONS = {
    "a row with only a key": lambda t: json.dumps({"key": json.loads(t.splitlines()[0])["key"]}) + "\n" + t,
    "a wrong-typed metric": lambda t: _edit_first(t, lambda r: r.update(throughput="fast")),
    "a changed value": lambda t: _edit_first(t, lambda r: r.update(throughput=r["throughput"] * 2)),
    "a relabelled lock": lambda t: _edit_first(t, lambda r: r.update(lock="ticket")),
    "a metric missing": lambda t: _edit_first(t, lambda r: r.pop("kicks")),
    "a null metric": lambda t: _edit_first(t, lambda r: r.update(acquisitions=None)),
    "a half line": lambda t: t[: len(t) // 2],
    "not JSON objects": lambda t: "[1, 2]\nnull\n42\n" + t,
    "an empty file": lambda t: "",
}


@pytest.mark.parametrize("what", sorted(CORRUPTIONS))
def test_a_damaged_resume_file_is_recomputed_not_mixed(tmp_path, finished_sweep, what):
    import shutil

    out = tmp_path / "r"
    shutil.copytree(finished_sweep, out)
    good = (finished_sweep / "points.jsonl").read_text()
    (out / "points.jsonl").write_text(CORRUPTIONS[what](good))
    result = invoke(*SWEEP, "--out", str(out))
    assert result.exit_code == 0, result.stderr
    assert (out / "points.jsonl").read_text() == good
    assert (out / "points.csv").read_text() == (finished_sweep / "points.csv").read_text()


def test_non_utf8_bytes_in_a_resume_file_are_dropped(tmp_path, finished_sweep):
    import shutil

    out = tmp_path / "r"
    shutil.copytree(finished_sweep, out)
    good = (finished_sweep / "points.jsonl").read_bytes()
    (out / "points.jsonl").write_bytes(b"\xff\xfe\x00garbage\n" + good)
    result = invoke(*SWEEP, "--out", str(out))
    assert result.exit_code == 0 and "computed again" in result.stderr
    assert (out / "points.jsonl").read_bytes() == good


@pytest.mark.parametrize("name", ("points.jsonl", "points.csv", "summary.json", "sweep.json"))
def test_a_directory_where_a_sweep_file_belongs_is_refused(tmp_path, name):
    out = tmp_path / "r"
    (out / name).mkdir(parents=True)
    refused(*SWEEP, "--out", str(out), names=f"{name} is a directory")


# ------------------------------------------------------------------------------------ check options
CHECK_REFUSALS = [
    (("--bug", "pv-kick-node-no-barrier", "--lock", "qspinlock"), "not in the code the qspinlock lock runs"),
    (("--bug", "unhash-without-slow-check", "--lock", "virt-tas"), "not in the code the virt-tas lock runs"),
    (("--bug", "pv-wait-no-latch", "--lock", "qspinlock-16k"), "pv-wait-no-latch"),
    (("--bug", "pending-after-tail", "--lock", "ticket"), "not in the code the ticket lock runs"),
    (("--bug", "pending-after-tail", "--lock", f"{CRASHES}:Tas"), "no injectable bugs"),
    (("--bug", "nonsense"), "unknown bug"),
    (("--runs", "5"), "--runs means nothing with --strategy exhaustive"),
    (("--seed", "5"), "--seed means nothing with --strategy exhaustive"),
    (("--preemptions", "1"), "--preemptions means nothing with --strategy exhaustive"),
    (("--strategy", "bounded", "--runs", "5"), "--runs means nothing with --strategy bounded"),
    (("--strategy", "random", "--preemptions", "1"), "--preemptions means nothing with --strategy random"),
    (("--strategy", "pct", "--max-states", "10"), "--max-states means nothing with --strategy pct"),
    (("--pct-depth", "3"), "--pct-depth means nothing with --strategy exhaustive"),
    (("--strategy", "random", "--pct-depth", "3"), "--pct-depth means nothing with --strategy random"),
    (("--strategy", "pct", "--pct-depth", "0"), "--pct-depth 0: must be 1 to 64"),
    (("--strategy", "pct", "--pct-depth", "65"), "--pct-depth 65: must be 1 to 64"),
    (("--strategy", "pct", "--pct-depth", "-1"), "--pct-depth -1"),
    (("--strategy", "pct", "--pct-depth", "1e9"), "--pct-depth '1e9': not an integer"),
    (("--strategy", "pct", "--pct-depth", "inf"), "--pct-depth 'inf': not an integer"),
    (("--replay", "abc", "--strategy", "random"), "--strategy means nothing with --replay"),
    (("--replay", "abc", "--runs", "3"), "--runs means nothing with --replay"),
    (("--replay", "abc", "--max-seconds", "3"), "--max-seconds means nothing with --replay"),
    (("--replay", "abc"), "--replay"),
    (("--replay", ""), "--replay"),
    (("--list-bugs", "--cpus", "3"), "--list-bugs lists the corpus and takes no other option (got --cpus)"),
    (("--list-bugs", "--lock", "ticket"), "(got --lock)"),
    (("--list-bugs", "--strategy", "random"), "(got --strategy)"),
    (("--cpus", "100000"), "--cpus 100000: at most"),
    (("--cpus", "1025", "--strategy", "random"), "--cpus 1025"),
    (("--cpus", "20000", "--lock", "qspinlock-16k", "--strategy", "random"), "--cpus 20000"),
    (("--cpus", "0"), "--cpus 0"),
    (("--cpus", "-3"), "--cpus -3"),
    (("--acquisitions", "0"), "--acquisitions 0"),
    (("--acquisitions", "10000000"), "--acquisitions 10000000: at most"),
    (("--max-states", "0"), "--max-states 0"),
    (("--max-states", "x"), "--max-states 'x'"),
    (("--max-seconds", "0"), "--max-seconds '0'"),
    (("--max-seconds", "inf"), "--max-seconds 'inf'"),
    (("--max-seconds", "nan"), "--max-seconds 'nan'"),
    (("--max-seconds", "-1"), "--max-seconds '-1'"),
    (("--memory-model", "power"), "--memory-model 'power'"),
    (("--strategy", "dfs"), "--strategy 'dfs'"),
    (("--symmetry", "half"), "--symmetry 'half'"),
    (("--workload", "idle"), "workload 'idle'"),
    (("--knob", "max_nodes"), "--knob 'max_nodes'"),
    (("--knob", "warp=1"), "--knob 'warp=1'"),
    (("--knob", "max_nodes=x"), "--knob max_nodes"),
    (("--knob", "max_nodes=0"), "--knob"),
    (("--lock", "mcs"), "--lock 'mcs'"),
    (("--lock", ""), "--lock ''"),
    (("--lock", "nofile.py:X"), "no such file"),
    (("--lock", f"{CRASHES}:Missing"), "has no class or function Missing"),
    (("--lock", f"{CRASHES}"), "--lock"),
    (("--interrupts", "-1"), "--interrupts -1"),
    (("--spurious-wakeups", "-1"), "--spurious-wakeups -1"),
    (("--graph", "g.dot"), "--graph g.dot: drawings are of execution graphs"),
    (("--memory-model", "armv8", "--graph", "g.txt"), "must end in .dot or .svg"),
    (("--memory-model", "armv8", "--graph", "/nonexistent/g.dot"), "no such directory"),
    (("--memory-model", "armv8", "--interrupts", "1"), "--interrupts"),
    (("--memory-model", "armv8", "--strategy", "random"), "--strategy random with --memory-model armv8"),
]
CHECK_INTEGERS = ("--cpus", "--acquisitions", "--runs", "--seed", "--preemptions", "--spurious-wakeups",
                  "--interrupts", "--max-states")


@pytest.mark.parametrize("args, names", CHECK_REFUSALS)
def test_check_refuses(args, names):
    refused("check", *args, names=names)


@pytest.mark.parametrize("value", ("inf", "nan", "1e308", "1.5", "x", "", "0x3"))
@pytest.mark.parametrize("option", CHECK_INTEGERS)
def test_check_refuses_a_bad_integer(option, value):
    strategy = {"--runs": "random", "--seed": "random", "--preemptions": "bounded"}.get(option, "exhaustive")
    refused("check", "--strategy", strategy, option, value, names=option)


@pytest.mark.parametrize("value", ("inf", "nan", "1e308", "x", ""))
@pytest.mark.parametrize("knob", ("pending_loops", "spin_threshold", "pv_prev_check_mask", "max_nodes"))
def test_check_refuses_a_bad_knob(knob, value):
    refused("check", "--knob", f"{knob}={value}", names="--knob")


def test_list_bugs_as_json():
    result = invoke("check", "--list-bugs", "--json")
    assert result.exit_code == 0
    bugs = json.loads(result.stdout)
    assert {b["name"] for b in bugs} >= {"pv-kick-node-no-barrier", "pv-wait-no-latch"}
    assert all(b["found_by"].startswith("pvspin check") for b in bugs if "fix_from" not in b)
    assert {b["name"] for b in bugs if "fix_from" in b} >= {"link-release", "lkmm-xchg-tail-release"}


@pytest.mark.parametrize("args, note", [
    (("--max-states", "50"), "stopped at the state limit (50)"),
    (("--strategy", "bounded", "--preemptions", "3", "--max-states", "50"), "state limit"),
    (("--memory-model", "armv8", "--max-states", "20"), "graph limit (20)"),
    (("--max-seconds", "1"), "stopped at the time limit (1 s)"),
])  # fmt: skip
def test_a_check_stopped_early_is_incomplete_with_status_3(args, note):
    result = invoke("check", "--lock", "qspinlock", "--cpus", "4", "--acquisitions", "2", *args)
    assert result.exit_code == 3, result.stdout + result.stderr
    assert "INCOMPLETE" in result.stdout and note in result.stdout


def _wait_until_it_catches_sigterm(proc, seconds=60.0):
    """Until the process's SIGTERM handler is installed (Linux: bit 14 of SigCgt in /proc/PID/status)."""
    status = Path(f"/proc/{proc.pid}/status")
    until = time.monotonic() + seconds
    while time.monotonic() < until and status.exists():
        caught = next((line.split()[1] for line in status.read_text().splitlines() if line.startswith("SigCgt:")), "0")
        if int(caught, 16) & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.05)
    time.sleep(3)  # no /proc: give it the time it used to get


def test_sigterm_stops_check_like_ctrl_c_and_prints_through_a_pipe():
    proc = subprocess.Popen([sys.executable, "-m", "pvspin", "check", "--lock", "qspinlock", "--cpus", "4",
                             "--acquisitions", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_until_it_catches_sigterm(proc)  # on a loaded machine 3 s once ended it still importing (-15)
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert out.startswith("pvspin check: qspinlock") and "INCOMPLETE" in out and "interrupted (SIGTERM)" in out
    assert "Traceback" not in err


# ------------------------------------------------------------------------------------ output paths
@pytest.mark.parametrize("path, names", [
    ("/nonexistent/dir/t.json", "no such directory"),
    ("", "--trace ''"),
    (".", "is a directory"),
    ("/proc/version/t.json", "not a directory"),
])  # fmt: skip
def test_run_refuses_a_trace_path_it_cannot_write_before_running(path, names):
    refused("run", "--duration-ms", "0.1", "--trace", path, names=names)


@pytest.mark.parametrize("window", ["5:2", "1:1", "a:b", "3", "", ":", "-1:2", "inf:5", "1:nan", "1e400:1e401",
                                    "30:40"])  # fmt: skip
def test_run_refuses_a_bad_trace_window_before_running(tmp_path, window):
    line = refused("run", "--duration-ms", "20", "--trace", str(tmp_path / "t.json"), f"--trace-window={window}",
                   names="--trace-window must")  # fmt: skip
    assert repr(window) in line
    assert not (tmp_path / "t.json").exists()


def test_run_refuses_a_trace_window_without_a_trace():
    refused("run", "--duration-ms", "0.1", "--trace-window", "0:1", names="--trace FILE")


@pytest.mark.parametrize("path, names", [
    ("", "--out ''"),
    ("/proc/version", "not a directory"),
    ("/proc/version/sub", "not a directory"),
])  # fmt: skip
def test_sweep_refuses_an_out_it_cannot_write(path, names):
    refused("sweep", "--param", "hold-ns=100", "--out", path, names=names)


# ------------------------------------------------------------------------------------ hangs
@pytest.fixture
def short_watchdog(monkeypatch):
    monkeypatch.setenv("PVSPIN_GUEST_SECONDS", "1")


HANGS = [
    (("check", "--lock", f"{CRASHES}:NeverYields"), 1, "guest-hang"),
    (("check", "--memory-model", "armv8", "--lock", f"{CRASHES}:NeverYields"), 1, "guest-hang"),
    (("check", "--lock", f"{CRASHES}:NeverYieldsInFactory"), 2, "stuck in guest code"),
    (("check", "--lock", f"{HERE / 'guest_crashes' / 'hangs_at_import.py'}:X"), 2, "failed to import"),
    (("run", "--duration-ms", "1", "--lock", f"{CRASHES}:NeverYields"), 1, "stuck in guest code"),
    (("run", "--lock", f"{HERE / 'guest_crashes' / 'hangs_at_import.py'}:X"), 2, "stuck in guest code"),
    (("sweep", "--param", "hold-ns=100", "--seeds", "1", "--duration-ms", "0.5", "--jobs", "2", "--no-plots",
      "--locks", f"{CRASHES}:NeverYields,qspinlock"), 1, "stuck in guest code"),
]


@pytest.mark.parametrize("args, code, message", HANGS)
def test_guest_code_that_never_yields_is_ended_by_the_watchdog(tmp_path, short_watchdog, args, code, message):
    started = time.monotonic()
    result = invoke(*args, *(("--out", str(tmp_path / "r")) if args[0] == "sweep" else ()))
    assert result.exit_code == code and message in result.stdout + result.stderr, result.stdout + result.stderr
    assert time.monotonic() - started < 30


# ------------------------------------------------------------------------------------ patch, litmus, demo
@pytest.mark.parametrize("args, names", [
    (("--cpus", "x"), "--cpus"), (("--cpus", "inf"), "--cpus"), (("--cpus", "1e308"), "--cpus"),
    (("--cpus", "-1"), "--cpus"), (("--cpus", ""), "--cpus"), (("--cpus", "0"), "0"),
    (("--cpus", "100000"), "100000"), (("--host", "xen"), "xen"), (("--kernel", "x"), "'x'"),
    (("--lock", "mcs"), "mcs"), (("--lock", ""), "''"), (("--patch-era", "5"), "'5'"),
    (("--lock", f"{CRASHES}:Tas"), "unknown lock"),
    (("--lock", "ticket", "--kernel", "paravirt", "--host", "kvm"), "ticket"),
])  # fmt: skip
def test_patch_refuses(args, names):
    refused("patch", *args, names=names)


SB_X86 = """X86 SB
{ x=0; y=0; }
 P0          | P1          ;
 MOV [x],$1  | MOV [y],$1  ;
 MOV EAX,[y] | MOV EAX,[x] ;
exists (0:EAX=0 /\\ 1:EAX=0)
"""
BROKEN_LITMUS = {
    **{f"cut at character {n}": SB_X86[:n] for n in range(0, len(SB_X86), 7)},
    "unknown register": SB_X86.replace("EAX,[y]", "RZZ,[y]"),
    "unknown instruction": SB_X86.replace("MOV [x],$1", "FROB [x],$1"),
    "ragged columns": SB_X86.replace(" MOV EAX,[y] | MOV EAX,[x] ;", " MOV EAX,[y] ;"),
    "a condition on a thread that is not there": SB_X86.replace("1:EAX=0)", "7:EAX=0)"),
    "a huge immediate": SB_X86.replace("$1", "$99999999999999999999999999"),
    "an unknown arch": SB_X86.replace("X86 SB", "MIPS SB"),
    "non-UTF-8": "X86 SB\n{ x=\xff; }\n",
}


@pytest.mark.parametrize("what", sorted(BROKEN_LITMUS))
def test_litmus_survives_a_broken_test(tmp_path, what):
    path = tmp_path / "t.litmus"
    path.write_text(BROKEN_LITMUS[what], errors="surrogateescape")
    result = invoke("litmus", str(path), "--memory-model", "tso")
    assert result.exit_code in (0, 1, 2), result.stdout + result.stderr
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


@pytest.mark.parametrize("args, names", [
    (("/nonexistent",), "/nonexistent"), (("--memory-model", "power", "x.litmus"), "power"),
    (("--engine", "x", "x.litmus"), "--engine"), (("--expect", "/nonexistent.csv", "x.litmus"), "--expect"),
    ((str(HERE / "guest_crashes"),), "no .litmus files"),
    (("",), "litmus path ''"),
])  # fmt: skip
def test_litmus_refuses(tmp_path, args, names):
    (tmp_path / "x.litmus").write_text(SB_X86)
    refused("litmus", *[str(tmp_path / a) if a == "x.litmus" else a for a in args], names=names)


# ------------------------------------------------------------------------------------ a fuzzer of command lines
FUZZ_VALUES = ("0", "1", "2", "-1", "inf", "nan", "1e308", "x", "", "3.5", "1,2", "qspinlock", "pvqspinlock",
               "ticket", "kvm", "baremetal", "sc", "tso", "armv8", "random", "bounded", "graph", "pct")
FUZZ_OPTIONS = {
    "check": ("--lock", "--cpus", "--acquisitions", "--memory-model", "--bug", "--strategy", "--runs", "--seed",
              "--preemptions", "--spurious-wakeups", "--interrupts", "--workload", "--knob", "--symmetry",
              "--max-states", "--replay"),
    "run": ("--host", "--kernel", "--lock", "--pcpus", "--vcpus", "--seed", "--hogs", "--hog-vcpus", "--lock-count",
            "--hold-ns", "--delay-ns", "--irq-rate", "--spurious-hz"),
    "sweep": ("--param", "--locks", "--seeds", "--host", "--pcpus", "--vcpus", "--hold-ns", "--delay-ns",
              "--lock-count", "--jobs"),
    "patch": ("--host", "--kernel", "--lock", "--patch-era", "--cpus"),
}
BOUNDS = {"check": ("--max-seconds", "5"), "run": ("--duration-ms", "0.2"), "patch": (),
          "sweep": ("--duration-ms", "0.1", "--no-plots")}


def fuzz_cases(n: int, seed: int = 12):
    import random

    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        command = rng.choice(sorted(FUZZ_OPTIONS))
        args = [command]
        for option in rng.sample(FUZZ_OPTIONS[command], rng.randint(1, 4)):
            value = rng.choice(FUZZ_VALUES)
            if option == "--param":
                value = f"{rng.choice(sorted(NAMED_PARAMS))}={value}"
            elif option == "--knob":
                value = f"max_nodes={value}"
            args += [option, value]
        cases.append(args)
    return cases


@pytest.mark.slow
@pytest.mark.parametrize("args", fuzz_cases(300), ids=lambda a: " ".join(a)[:80])
def test_fuzzed_command_lines_never_trace_back(tmp_path, args):
    """A seeded random command line: a documented exit status, and bad input is one ``error:`` line."""
    args = list(args) + list(BOUNDS[args[0]])
    if args[0] == "sweep":
        args += ["--out", str(tmp_path / "r")]
        if "--param" not in args:
            args += ["--param", "hold-ns=100"]
    if args[0] == "check" and any(a in args for a in ("--replay",)):
        args.remove("--max-seconds"), args.remove("5")
    env = {**os.environ, "PVSPIN_GUEST_SECONDS": "5"}
    out = subprocess.run([sys.executable, "-m", "pvspin", *args], capture_output=True, text=True, timeout=120,
                         env=env)  # fmt: skip
    assert "Traceback" not in out.stderr + out.stdout, out.stderr
    assert out.returncode in (0, 1, 2, 3), (out.returncode, out.stderr)
    if out.returncode == 2:
        errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, out.stderr


@pytest.mark.parametrize("args", [
    ("--param", "hold-ns=1,2", "--seeds", "100000000"),
    ("--param", "hold-ns=" + ",".join(map(str, range(1, 400))), "--param", "vcpus=" + ",".join(map(str, range(1, 300)))),
])  # fmt: skip
def test_sweep_refuses_a_grid_that_cannot_be_meant(tmp_path, args):
    refused("sweep", "--out", str(tmp_path / "r"), *args, names="points")


SCENARIO_STRINGS = ("host.hypervisor", "guests.0.lock", "guests.0.kernel", "guests.0.name",
                    "guests.0.interrupts.level", "guests.0.workload.hold.kind")
TOML_LITERALS = ("inf", "-inf", "nan", "-1", "0", "1", "2", "1.5", "1e308", "'x'", "''", "true", "[1]", "{}",
                 "'qspinlock'", "'kvm'")


def toml_cases(n: int, seed: int = 7):
    import random

    rng = random.Random(seed)
    fields = SCENARIO_NUMBERS + list(SCENARIO_STRINGS)
    return [(rng.choice(fields), rng.choice(TOML_LITERALS)) for _ in range(n)]


@pytest.mark.slow
@pytest.mark.parametrize("field, literal", toml_cases(200))
def test_fuzzed_scenario_files_never_trace_back(tmp_path, field, literal):
    """One field of a scenario file set to a random literal: it runs, or it is refused in one line."""
    toml = tmp_path / "s.toml"
    toml.write_text(scenario_toml(field, literal))
    result = invoke("run", "--scenario", str(toml), "--duration-ms", "0.05")
    assert result.exit_code in (0, 1, 2), result.stderr
    if result.exit_code:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
