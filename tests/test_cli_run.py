"""``pvspin run``: flags, TOML scenarios, JSON schema, trace file, one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest


def pvspin(*args):
    return subprocess.run([sys.executable, "-m", "pvspin", *args], capture_output=True, text=True, timeout=300)


def test_json_has_the_stable_fields():
    out = pvspin("run", "--lock", "pvqspinlock", "--vcpus", "4", "--pcpus", "2", "--duration-ms", "2", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    g = result["guests"][0]
    for key in ("throughput", "fairness_max_over_min", "fail", "lock_events", "latency_ns", "vcpu_time_s", "per_vcpu"):
        assert key in g
    assert g["fail"] == 0 and g["acquisitions"] > 0 and g["lock"] == "pvqspinlock"
    assert set(g["latency_ns"]) == {"p50", "p99", "p99.9", "max"}
    assert set(result["host"]["pcpu_time_share"]) == {
        "critical_section",
        "spinning",
        "other_guest",
        "hypervisor",
        "idle",
    }
    assert abs(sum(result["host"]["pcpu_time_share"].values()) - 1) < 0.02


def test_same_seed_same_numbers_other_seed_other_numbers():
    args = ("run", "--lock", "qspinlock", "--vcpus", "3", "--pcpus", "2", "--duration-ms", "1", "--json")
    a, b = pvspin(*args, "--seed", "5"), pvspin(*args, "--seed", "5")
    c = pvspin(*args, "--seed", "6")
    strip = lambda out: {k: v for k, v in json.loads(out)["guests"][0].items()}  # noqa: E731
    assert strip(a.stdout) == strip(b.stdout)
    assert strip(a.stdout) != strip(c.stdout)


def test_toml_scenario_with_flag_override(tmp_path):
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        'duration_ms = 1\nseed = 3\n[host]\npcpus = 2\nhypervisor = "kvm-nopv"\n'
        '[[guests]]\nname = "web"\nvcpus = 3\nlock = "virt-tas"\n[guests.workload]\nlocks = 2\n'
    )
    out = pvspin("run", "--scenario", str(scenario), "--vcpus", "2", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["scenario"]["guests"][0]["vcpus"] == 2  # the flag wins
    assert result["guests"][0]["guest"] == "web" and result["guests"][0]["lock"] == "virt-tas"


def test_trace_file_is_chrome_trace_json(tmp_path):
    path = tmp_path / "t.json"
    out = pvspin("run", "--vcpus", "3", "--pcpus", "2", "--duration-ms", "1", "--trace", str(path))
    assert out.returncode == 0, out.stderr
    events = json.loads(path.read_text())["traceEvents"]
    names = {e["args"]["name"] for e in events if e["name"] in ("process_name", "thread_name")}
    assert {"host pCPUs", "pCPU 0", "guest guest0", "guest0/vcpu0"} <= names
    spans = [e for e in events if e["ph"] == "X"]
    assert "running" in {e["name"] for e in spans}
    spins = [e for e in spans if e["cat"] == "spin"]  # each names its wait and its lock
    assert spins and all(e["name"] == f"{e['args']['wait']} {e['args']['lock']}" for e in spins)
    assert all(e["dur"] >= 0 for e in spans)


@pytest.mark.parametrize(
    "args, message",
    [
        (("--pcpus", "0"), "--pcpus 0: Input should be greater than 0"),
        (("--vcpus", "x"), "--vcpus must be an integer, got 'x'"),
        (("--host", "xen"), "'xen'"),
        (("--lock", "mcs"), "unknown lock 'mcs'"),
        (("--lock", "ticket", "--kernel", "paravirt"), "ticket"),
        (("--lock", "pvqspinlock", "--host", "baremetal"), "pvqspinlock"),
        (("--duration-ms", "-1"), "--duration-ms"),
        (("--scenario", "/nonexistent.toml"), "no such file"),
        (("--lock", "nofile.py:Lock"), "no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    out = pvspin("run", "--duration-ms", "1", *args) if "--duration-ms" not in args else pvspin("run", *args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_a_users_own_lock_runs_and_a_broken_one_fails_locktorture():
    args = ("run", "--vcpus", "4", "--pcpus", "2", "--duration-ms", "2", "--json")
    example = Path(__file__).resolve().parent.parent / "examples" / "user_lock.py"
    good = pvspin(*args, "--lock", f"{example}:TasLock")
    broken = pvspin(*args, "--lock", f"{example}:BrokenTasLock")
    assert good.returncode == 0 and broken.returncode == 1, good.stderr + broken.stderr  # 1: FAILURE, a finding
    assert json.loads(good.stdout)["guests"][0]["fail"] == 0
    assert json.loads(broken.stdout)["guests"][0]["fail"] > 0  # locktorture's Fail: two vCPUs inside
