"""Bad input to every subcommand and to the scenario file: refused in one line, never a traceback.

Each case asserts the exit status (2 for bad input, or the documented status of a finding), one
``error:`` line on stderr naming the bad value, and no "Traceback" anywhere.  The command runs
in-process (typer's runner), so that several hundred cases take seconds.  Cases are generated
from the option tables and the scenario model itself, so a new field or flag is covered too.
"""

from __future__ import annotations

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
    option = f"--{flag}"
    shown = "--locks" if flag == "lock-count" else option  # --lock-count sets the scenario's workload.locks
    refused("sweep", "--out", str(tmp_path / "r"), "--param", "hold-ns=100", option, value, names=shown)


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
    result = invoke("check", "--lock", f"{CRASHES}:{name}", "--strategy", strategy, "--runs", "20")
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
