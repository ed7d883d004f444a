"""Sweep plots say what was run (host, workload, duration), tell every lock apart by colour and
marker (a user's locks too), keep error bars on a log axis, and label axes in words with units."""

import pytest
from matplotlib.ticker import MaxNLocator

from pvspin.sim.plots import LOCK_STYLES, _figure, lock_styles
from pvspin.sim.sweep import build_sweep, human_label


def summary(param="vcpus", values=(2, 4), locks=("qspinlock", "a.py:One", "b.py:Two"), means=None):
    base = build_sweep([f"{param}={','.join(map(str, values))}"], "qspinlock", 2,
                       overrides={"host": {"pcpus": 2}, "duration_ms": 7}).base.model_dump(mode="json")  # fmt: skip
    aggregate = []
    for k, lock in enumerate(locks):
        for i, v in enumerate(values):
            mean = means[i] if means else 1e6 * (k + 1 + i)
            stats = {"mean": mean, "std": mean * 2, "min": 0, "max": mean * 3}  # a std larger than the mean
            aggregate.append({"lock": lock, param: v, "seeds": 2, "starved_seeds": 0, "throughput": stats,
                              "latency_p99_ns": stats, "fairness_max_over_min": stats})  # fmt: skip
    params = [{"name": param, "label": human_label(param) if "_" in param else param, "path": param,
               "values": list(values)}]  # fmt: skip
    return {"sweep": {"params": params, "locks": list(locks), "seeds": 2, "base": base}, "aggregate": aggregate}


def test_title_names_host_workload_and_duration():
    fig = _figure(summary(), summary()["sweep"]["params"], "throughput", "y", 1e-6, False)
    text = fig._suptitle.get_text()
    assert "kvm host, 2 pCPUs" in text and "vCPUs swept" in text and "1 lock(s), hold 400 ns, delay 2000 ns" in text
    assert "7 ms simulated, 2 seed(s)" in text


def test_every_lock_has_its_own_colour_and_marker():
    styles = lock_styles(["qspinlock", "a.py:One", "b.py:Two", "pvqspinlock"])
    assert styles["qspinlock"] == LOCK_STYLES["qspinlock"]
    assert len(set(styles.values())) == 4
    assert len({c for c, _ in styles.values()}) == 4 and len({m for _, m in styles.values()}) == 4
    fig = _figure(summary(), summary()["sweep"]["params"], "throughput", "y", 1e-6, False)
    drawn = {(c.lines[0].get_color(), c.lines[0].get_marker()) for c in fig.axes[0].containers}
    assert len(drawn) == 3


def test_error_bars_stay_on_a_log_axis():
    s = summary(means=[1.0, 100.0])  # spans a decade: log axis
    fig = _figure(s, s["sweep"]["params"], "latency_p99_ns", "y", 1.0, True)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    lows = [seg[:, 1].min() for coll in ax.collections for seg in coll.get_segments()]
    assert lows and min(lows) > 0


def test_integer_parameters_get_integer_ticks():
    s = summary()
    fig = _figure(s, s["sweep"]["params"], "throughput", "y", 1e-6, False)
    locator = fig.axes[0].xaxis.get_major_locator()
    assert isinstance(locator, MaxNLocator) and locator._integer
    s = summary(param="overcommit", values=(0.5, 1.5))
    fig = _figure(s, s["sweep"]["params"], "throughput", "y", 1e-6, False)
    assert not fig.axes[0].xaxis.get_major_locator()._integer


def test_hog_vcpus_is_a_named_parameter():
    assert human_label("hog_vcpus") == "hog vCPUs"
    assert build_sweep(["hog_vcpus=1,2"], "qspinlock", 1).params[0].label == "vCPUs per hog guest"


@pytest.mark.parametrize("path, label", [
    ("host.costs.kick_wake_ns", "kick wake (ns)"), ("guests.0.workload.long_hold_us",
     "long hold (µs)"), ("host.spurious_wakeup_hz", "spurious wakeup (Hz)"), ("guests.0.workload.long_hold_every",
     "long hold every"),
])  # fmt: skip
def test_human_axis_labels(path, label):
    assert human_label(path) == label
    assert build_sweep([f"{path}=1,2"], "qspinlock", 1).params[0].label == label
