"""Plots of a sweep's summary: one line per lock, error bars over seeds, PNG and SVG.

The first swept parameter is the x axis; a second one gives one panel per value.  Output is
reproducible: the SVG hash salt is fixed and no date is written into either format.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter  # noqa: E402

plt.rcParams["svg.hashsalt"] = "pvspin"

# metric → (file stem, y-axis label, scale of the raw value, log y axis if the values span a decade)
FIGURES = {
    "throughput": ("throughput", "throughput (million acquisitions/s)", 1e-6, False),
    "fairness_max_over_min": ("fairness", "per-vCPU acquisitions, max ÷ min", 1.0, True),
    "latency_p99_ns": ("latency_p99", "p99 acquisition latency (µs)", 1e-3, True),
}

LOCK_STYLES = {
    "qspinlock": ("tab:blue", "o"),
    "pvqspinlock": ("tab:green", "s"),
    "pvqspinlock-4.2": ("tab:olive", "D"),
    "pvqspinlock-5.2": ("tab:cyan", "X"),
    "virt-tas": ("tab:red", "^"),
    "ticket": ("tab:purple", "v"),
    "pvticket": ("tab:brown", "P"),
}
# a user's locks (path/to/file.py:NAME), in the order the sweep lists them: none of the above
USER_STYLES = [("tab:orange", "X"), ("tab:pink", "*"), ("tab:gray", "h"), ("tab:cyan", "p"), ("black", "<"),
               ("gold", ">"), ("darkblue", "d"), ("lime", "8")]  # fmt: skip


def lock_styles(locks: list[str]) -> dict[str, tuple[str, str]]:
    """A colour and a marker per lock, distinct across the sweep's locks."""
    styles, spare = {}, iter(USER_STYLES)
    for lock in locks:
        styles[lock] = LOCK_STYLES.get(lock) or next(spare, ("black", "x"))
    return styles


def plot_files(out: Path) -> list[Path]:
    """The files :func:`plot_sweep` writes into ``out``."""
    return [out / f"{stem}.{ext}" for stem, *_ in FIGURES.values() for ext in ("png", "svg")]


def title(summary: dict) -> str:
    """What was run: host, workload, duration, seeds."""
    base = summary["sweep"]["base"]
    host, guest = base["host"], base["guests"][0]
    work = guest["workload"]
    swept = {p["name"] for p in summary["sweep"]["params"]}
    vcpus = "vCPUs swept" if swept & {"overcommit", "vcpus"} else f"{guest['vcpus']} vCPUs"
    pcpus = "pCPUs swept" if "pcpus" in swept else f"{host['pcpus']} pCPUs"
    hogs = f", {base['hog_guests']} hog guest(s)" if base["hog_guests"] else ""
    warm = f" after {base['warmup_ms']:g} ms warm-up" if base.get("warmup_ms") else ""
    return (f"{host['hypervisor']} host, {pcpus}{hogs}; locktorture on {vcpus}, {work['locks']} lock(s), "
            f"hold {work['hold']['mean_ns']:g} ns, delay {work['delay']['mean_ns']:g} ns\n"
            f"{base['duration_ms']:g} ms simulated{warm}, {summary['sweep']['seeds']} seed(s): mean ± std")


def plot_sweep(summary: dict, out: Path) -> list[Path]:
    """Draw every figure of ``FIGURES`` for ``summary`` (from :func:`pvspin.sim.sweep.run_sweep`)."""
    params = summary["sweep"]["params"]
    written = []
    for metric, (stem, ylabel, scale, log) in FIGURES.items():
        fig = _figure(summary, params, metric, ylabel, scale, log)
        for ext in ("png", "svg"):
            path = out / f"{stem}.{ext}"
            fig.savefig(path, dpi=120, metadata={"Date": None} if ext == "svg" else {"Software": None})
            written.append(path)
        plt.close(fig)
    return written


def _figure(summary: dict, params: list[dict], metric: str, ylabel: str, scale: float, log: bool):
    x_param = params[0]
    panels = params[1]["values"] if len(params) > 1 else [None]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.5 * len(panels), 4.2), sharey=True, squeeze=False, layout="constrained"
    )
    fig.suptitle(title(summary), fontsize=9)
    # a log axis only when the values span a decade; decided first, so error bars can stay on it
    values = [e[metric]["mean"] * scale for e in summary["aggregate"] if e.get(metric) and e[metric]["mean"] > 0]
    log = log and bool(values) and max(values) > 10 * min(values)
    styles = lock_styles(summary["sweep"]["locks"])
    integer_x = all(isinstance(v, int) for v in x_param["values"])  # parse_param keeps integers ints
    for ax, panel in zip(axes[0], panels, strict=True):
        for lock in summary["sweep"]["locks"]:
            xs, ys, errs = [], [], []
            color, marker = styles[lock]
            for entry in summary["aggregate"]:
                if entry["lock"] != lock or (panel is not None and entry[params[1]["name"]] != panel):
                    continue
                if metric == "fairness_max_over_min" and entry["starved_seeds"]:
                    # some vCPU never got the lock: max ÷ min is infinite, shown at the top of the axes
                    x = entry[x_param["name"]]
                    ax.scatter([x], [0.96], marker=marker, color=color, transform=ax.get_xaxis_transform())
                    ax.annotate(f"∞: a vCPU starved ({entry['starved_seeds']}/{entry['seeds']} seeds)", (x, 0.96),
                                xycoords=("data", "axes fraction"), xytext=(6, 0), textcoords="offset points",
                                color=color, ha="left", va="center", fontsize=8)  # fmt: skip
                stats = entry.get(metric)
                if stats is None:
                    continue
                xs.append(entry[x_param["name"]])
                ys.append(stats["mean"] * scale)
                errs.append(stats["std"] * scale)
            if not xs:
                continue
            order = sorted(range(len(xs)), key=xs.__getitem__)
            ys, errs = [ys[i] for i in order], [errs[i] for i in order]
            # on a log axis a bar below zero would vanish: the lower bar stops short of zero
            below = [min(e, 0.9 * y) for y, e in zip(ys, errs, strict=True)] if log else errs
            ax.errorbar(
                [xs[i] for i in order], ys, yerr=[below, errs], label=lock, color=color, marker=marker, capsize=3,
            )  # fmt: skip
        ax.set_xlabel(x_param["label"])
        if integer_x:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if panel is not None:
            ax.set_title(f"{params[1]['label']} = {panel:g}", fontsize=10)
        if metric == "throughput":
            ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    if log:
        for ax in axes[0]:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=8)
    return fig
