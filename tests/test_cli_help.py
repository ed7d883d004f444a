"""``--help`` shows every option's default and unit, and the defaults it shows are the ones used."""

import re
import subprocess
import sys

import pytest
import typer.core
import typer.main

from pvspin.cli import app
from pvspin.sim.command import FLAG_FIELDS
from pvspin.sim.scenario import Scenario

COMMANDS = typer.main.get_command(app).commands


def shown_default(param: typer.core.TyperOption) -> str | None:
    found = re.search(r"\[default: ([^\]]+)\]", param.help or "")
    if found:
        return found.group(1)
    if param.show_default and param.default is not None and not param.is_flag:
        return str(param.default)
    return None


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_shows_a_default_and_what_it_takes(name):
    for param in COMMANDS[name].params:
        if not isinstance(param, typer.core.TyperOption) or param.hidden or param.name == "help":
            continue
        if param.is_flag or param.multiple:  # --json, --ple/--no-ple (shown), --bug NAME (repeatable): no value
            continue
        assert shown_default(param) is not None, f"{name} {param.opts[0]} shows no default"
        assert param.metavar and param.metavar != "<str>", f"{name} {param.opts[0]} says nothing of its value"


def field(path: str):
    value = Scenario()
    for part in path.split("."):
        value = value[int(part)] if part.isdigit() else getattr(value, part)
    return value


@pytest.mark.parametrize("name", ["run", "sweep"])
def test_the_defaults_shown_are_the_scenarios(name):
    checked = 0
    for param in COMMANDS[name].params:
        if param.name in FLAG_FIELDS and not param.is_flag:
            default = field(FLAG_FIELDS[param.name][0])
            if isinstance(default, int | float):
                assert float(shown_default(param)) == default, (name, param.opts[0])
                checked += 1
    assert checked >= (12 if name == "run" else 6)


def test_help_text_is_not_eaten_as_markup():
    out = subprocess.run([sys.executable, "-m", "pvspin", "run", "--help"], capture_output=True, text=True,
                         env={"COLUMNS": "200", "PATH": ""})  # fmt: skip
    assert "--pcpus N" in out.stdout and "physical CPUs  [default: 4]" in out.stdout


def test_version():
    from importlib.metadata import version

    out = subprocess.run([sys.executable, "-m", "pvspin", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == f"pvspin {version('pvspin')}\n"


def test_sweep_param_help_names_every_named_parameter():
    from pvspin.sim.sweep import NAMED_PARAMS

    (param,) = [p for p in COMMANDS["sweep"].params if p.name == "param"]
    listed = param.help.split(":")[1].split(", or")[0]
    assert {name.strip() for name in listed.split(",")} == set(NAMED_PARAMS)
