"""``--warmup-ms``: the warm-up runs, then every count starts again; what is measured is the run
after it, exactly (the same run without a warm-up, minus what it counted by the warm-up's end)."""

from pvspin.sim.command import build_scenario, execute

FLAGS = dict(lock="qspinlock", vcpus="8", pcpus="4", ple=False)


def run(**flags) -> dict:
    return execute(build_scenario(None, FLAGS | flags), None, False)


def test_the_warmup_is_excluded_from_the_measurement():
    whole = run(duration_ms="3", stat_interval="1")  # statistics at 1 ms (and the end, at 3 ms)
    warm = run(warmup_ms="1", duration_ms="2")
    before = whole["guests"][0]["locktorture"]["stats"][0]
    assert before["t_s"] == 0.001
    g = warm["guests"][0]
    assert g["acquisitions"] == whole["guests"][0]["acquisitions"] - before["total"]
    assert warm["host"]["simulated_seconds"] == 0.002 and warm["host"]["warmup_seconds"] == 0.001
    assert g["throughput"] == g["acquisitions"] / 0.002
    assert g["locktorture"]["stats"][-1]["t_s"] == 0.003  # stamped with the time since boot, as dmesg does
    w = g["vcpu_time_s"]
    assert abs(sum(w.values()) - 8 * 0.002) < 1e-6  # every vCPU's time from the warm-up's end, once


def test_no_warmup_is_the_default_and_changes_nothing():
    assert run(duration_ms="1")["guests"] == run(duration_ms="1", warmup_ms="0")["guests"]


def test_a_sweep_warms_up_each_point(tmp_path):
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "pvspin", "sweep", "--param", "hold-ns=100", "--seeds", "1",
                          "--pcpus", "2", "--duration-ms", "0.2", "--warmup-ms", "0.3", "--no-plots", "--out",
                          str(tmp_path)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "sweep.json").read_text())["base"]["warmup_ms"] == 0.3
