"""The published shapes: the judging rules on made-up numbers (fast), and on the simulator (slow)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from pvspin.sim.sweep import build_sweep, run_sweep

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("shapes", ROOT / "experiments" / "shapes.py")
shapes = importlib.util.module_from_spec(_spec)
sys.modules["shapes"] = shapes  # dataclasses look their module up there
_spec.loader.exec_module(shapes)


def entry(throughput, spread=1.05, node=0, head=0, starved=0):
    stat = lambda x: {"mean": x, "std": 0.0, "min": x, "max": x}  # noqa: E731
    return {"throughput": stat(throughput), "fairness_max_over_min": stat(spread), "pv_wait_node": stat(node),
            "pv_wait_head": stat(head), "starved_seeds": starved}  # fmt: skip


def textbook():
    """Numbers shaped as the literature says."""
    t = {}
    for f, q, pv, old, tas, ticket in [(1.0, 100, 99, 98, 100, 95), (1.5, 40, 95, 60, 95, 30), (2.0, 20, 70, 50, 90, 15)]:
        t["qspinlock", f] = entry(q)
        t["pvqspinlock", f] = entry(pv, node=500 if f > 1 else 0, head=20 if f > 1 else 0)
        t["pvqspinlock-4.2", f] = entry(old)
        t["virt-tas", f] = entry(tas, spread=50 if f > 1 else 2)
        t["ticket", f] = entry(ticket)
    return t


def holds(table):
    return {v.shape.split(".")[0]: v.holds for v in shapes.judge(table, [1.0, 1.5, 2.0])}


def test_textbook_numbers_pass_every_shape():
    assert holds(textbook()) == {str(i): True for i in range(1, 6)}


@pytest.mark.parametrize(
    "change, shape",
    [
        ((("qspinlock", 1.5), entry(70)), "1"),  # loses less than the factor
        ((("pvqspinlock", 2.0), entry(22, node=500, head=20)), "2"),  # barely ahead of native
        ((("pvqspinlock-4.2", 2.0), entry(75)), "2"),  # the 4.2 variant ahead of the modern one
        ((("pvqspinlock", 1.0), entry(90)), "3"),  # PV costs 10% without overcommit
        ((("virt-tas", 2.0), entry(90, spread=2)), "4"),  # TAS as fair as the queued locks
        ((("virt-tas", 2.0), entry(40, spread=50)), "4"),  # TAS loses its throughput
        ((("pvqspinlock", 2.0), entry(70, node=100, head=90)), "5"),  # halts at the head as often
    ],
)
def test_each_shape_fails_when_its_numbers_do(change, shape):
    table = textbook()
    key, value = change
    table[key] = value
    verdicts = holds(table)
    assert verdicts[shape] is False
    assert all(ok for name, ok in verdicts.items() if name != shape)


def test_a_starved_vcpu_counts_as_unbounded_unfairness():
    table = textbook()
    table["virt-tas", 2.0] = entry(90, spread=1.5, starved=1)
    table["virt-tas", 1.5] = entry(95, spread=1.5, starved=2)
    assert holds(table)["4"] is True


WORKLOADS = {"saturated": {}, "light": {"guests": [{"workload": {"delay": {"mean_ns": 10000}}}]}}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """Reduced overcommit sweeps (4 pCPUs, 1x/1.5x/2x, 100 ms, one seed): the verdicts per workload."""
    verdicts = {}
    for name, overrides in WORKLOADS.items():
        sweep = build_sweep(["overcommit=1,1.5,2"], "qspinlock,pvqspinlock,virt-tas", 1,
                            scenario_file=str(ROOT / "experiments" / "overcommit.toml"),
                            overrides={"duration_ms": 100, **overrides})  # fmt: skip
        out = tmp_path_factory.mktemp(name)
        run_sweep(sweep, out, jobs=2, log=lambda line: None)
        table, factors = shapes.load(out / "summary.json")
        verdicts[name] = {v.shape.split(".")[0]: v for v in shapes.judge(table, factors)}
    return verdicts


# What docs/results.md reports: on a saturated lock shapes 1 and 5 hold; at light contention 1, 2, 3, 5.
HOLDS = [("saturated", "1"), ("saturated", "5"), ("light", "1"), ("light", "2"), ("light", "3"), ("light", "5")]
DOES_NOT = [("saturated", "2"), ("saturated", "3"), ("saturated", "4"), ("light", "4")]


@pytest.mark.slow
@pytest.mark.parametrize("workload, shape", HOLDS)
def test_shape_holds_on_the_simulator(simulated, workload, shape):
    assert simulated[workload][shape].holds, simulated[workload][shape].numbers


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="does not come out: see docs/results.md for the cause")
@pytest.mark.parametrize("workload, shape", DOES_NOT)
def test_shape_not_reproduced(simulated, workload, shape):
    assert simulated[workload][shape].holds, simulated[workload][shape].numbers


@pytest.mark.slow
def test_tas_spread_when_another_vm_overcommits_the_host(tmp_path):
    """What docs/results.md reports for shape 4: a hog VM takes half of two pCPUs (1.5x), so
    the lock guest's vCPUs get unequal CPU shares; test-and-set turns that into a spread at
    least ten times the queued locks' (which stay FIFO-fair)."""
    sweep = build_sweep(["hog_vcpus=2"], "virt-tas,qspinlock,pvqspinlock", 1,
                        scenario_file=str(ROOT / "experiments" / "vm-overcommit.toml"),
                        overrides={"duration_ms": 100})  # fmt: skip
    run_sweep(sweep, tmp_path, jobs=2, log=lambda line: None)
    aggregate = json.loads((tmp_path / "summary.json").read_text())["aggregate"]
    spread = {e["lock"]: e["fairness_max_over_min"]["mean"] for e in aggregate}
    assert spread["virt-tas"] >= 10 * max(spread["qspinlock"], spread["pvqspinlock"]), spread


def test_the_stealing_table_gives_the_share_of_acquisitions_taken_by_stealing(tmp_path):
    stat = lambda x: {"mean": x, "std": 0.0, "min": x, "max": x}  # noqa: E731
    rows = [{"lock": "pvqspinlock", "overcommit": 1.25, "throughput": stat(5e5), "acquisitions": stat(1000),
             "pv_lock_stealing": stat(250), "fairness_max_over_min": stat(1.5), "starved_seeds": 0},
            {"lock": "virt-tas", "overcommit": 1.25, "throughput": stat(6e5), "acquisitions": stat(1200),
             "pv_lock_stealing": stat(0), "fairness_max_over_min": None, "starved_seeds": 3}]  # fmt: skip
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"aggregate": rows}))
    lines = shapes.stealing_table(path).splitlines()
    assert "| pvqspinlock | 1.25x | 500,000 | 25.0% | 1.50 | 0 |" in lines
    assert "| virt-tas | 1.25x | 600,000 | - | inf | 3 |" in lines  # no queue to steal from; a vCPU starved


def test_the_kbuild_table_divides_the_overcommitted_builds_by_the_1x_ones(tmp_path):
    stat = lambda x: {"mean": x, "std": 0.0, "min": x, "max": x}  # noqa: E731
    times = {(32, 32): 28.0, (48, 32): 42.0, (64, 32): 56.0, (48, 48): 28.0, (64, 64): 28.0}
    rows = [{"lock": "qspinlock", "vcpus": v, "pcpus": p, "completion_ms": stat(t)} for (v, p), t in times.items()]
    rows.append({"lock": "pvticket", "vcpus": 32, "pcpus": 32, "completion_ms": stat(28.0)})  # the rest never finished
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"aggregate": rows}))
    lines = shapes.kbuild_table(path).splitlines()
    assert "| qspinlock | 28.0 | 42.0 | 56.0 | 28.0 | 28.0 | 1.50 | 1.50 | 2.00 |" in lines
    assert "| pvticket | 28.0 | not complete | not complete | not complete | not complete | - | - | - |" in lines


def test_the_kick_boost_table_sets_each_host_s_boosted_run_beside_its_plain_one(tmp_path):
    stat = lambda x: {"mean": x, "std": 0.0, "min": x, "max": x}  # noqa: E731
    rows = [{"lock": "pvqspinlock", "pcpus": p, "host.kick_boost": b, "throughput": stat(t),
             "fairness_max_over_min": stat(1.5), "kicks": stat(100)}
            for p, b, t in [(6, 0, 600.0), (6, 1, 660.0), (12, 0, 500.0), (12, 1, 500.0)]]  # fmt: skip
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"aggregate": rows}))
    lines = shapes.kick_boost_table(path).splitlines()
    assert lines.index("| pvqspinlock | 12 | 500 | 500 | 1.000 | 1.50 / 1.50 | 100 / 100 |") < \
        lines.index("| pvqspinlock | 6 | 600 | 660 | 1.100 | 1.50 / 1.50 | 100 / 100 |")  # the biggest host first
