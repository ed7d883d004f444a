"""``pvspin scenario``: the scenario file's JSON Schema, and the merged scenario a run would use,
as TOML that ``--scenario`` reads back; and the lock a host runs when none is given."""

import json
import subprocess
import sys
import tomllib

import pytest

from pvspin.sim.command import build_scenario
from pvspin.sim.scenario import Scenario


def pvspin(*args):
    return subprocess.run([sys.executable, "-m", "pvspin", *args], capture_output=True, text=True, timeout=120)


def test_schema_is_pydantics():
    out = pvspin("scenario", "--schema")
    assert out.returncode == 0
    assert json.loads(out.stdout) == Scenario.model_json_schema()


def test_show_merges_file_and_flags_and_reads_back(tmp_path):
    base = tmp_path / "base.toml"
    base.write_text('duration_ms = 7\n[host]\npcpus = 2\n[[guests]]\nname = "web"\nvcpus = 3\n')
    out = pvspin("scenario", "--show", "--scenario", str(base), "--vcpus", "2", "--warmup-ms", "1")
    assert out.returncode == 0, out.stderr
    shown = Scenario.model_validate(tomllib.loads(out.stdout))
    assert shown == build_scenario(str(base), {"vcpus": "2", "warmup_ms": "1"})
    assert (shown.duration_ms, shown.host.pcpus, shown.guests[0].name, shown.guests[0].vcpus) == (7, 2, "web", 2)
    again = tmp_path / "shown.toml"
    again.write_text(out.stdout)
    assert pvspin("scenario", "--show", "--scenario", str(again)).stdout == out.stdout


@pytest.mark.parametrize("args, message", [
    ((), "give --schema or --show"),
    (("--schema", "--show"), "give --schema or --show"),
    (("--schema", "--vcpus", "2"), "--schema takes no other argument"),
    (("--show", "--vcpus", "0"), "--vcpus 0"),
])  # fmt: skip
def test_bad_input(args, message):
    out = pvspin("scenario", *args)
    assert out.returncode == 2 and message in out.stderr


@pytest.mark.parametrize("host, vcpus, lock", [
    ("kvm", "4", "pvqspinlock"), ("baremetal", "4", "qspinlock"), ("kvm-nopv", "4", "virt-tas"), ("kvm", "1", "qspinlock"),
])  # fmt: skip
def test_the_host_picks_a_lock_it_can_run(host, vcpus, lock):
    assert build_scenario(None, {"host": host, "vcpus": vcpus}).guests[0].lock == lock
    out = pvspin("run", "--host", host, "--vcpus", vcpus, "--pcpus", "4", "--duration-ms", "0.2", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["guests"][0]["lock"] == lock


def test_run_locks_is_refused_with_a_pointer():
    out = pvspin("run", "--locks", "2")
    assert out.returncode == 2
    assert out.stderr == ("error: run --locks is now --lock-count (the number of locks; sweep --locks is a list of "
                          "lock kinds)\n")
