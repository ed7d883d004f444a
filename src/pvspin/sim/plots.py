"""Plots of a sweep's summary: one line per lock, error bars over seeds, PNG and SVG.

The first swept parameter is the x axis; a second one gives one panel per value.  Output is
reproducible: the SVG hash salt is fixed and no date is written into either format.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402

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
    "virt-tas": ("tab:red", "^"),
    "ticket": ("tab:purple", "v"),
    "pvticket": ("tab:brown", "P"),
}


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
    base = summary["sweep"]["base"]
    fig.suptitle(
        f"{base['host']['pcpus']} pCPUs" + (f" (base; swept: {x_param['name']})" if x_param["name"] == "pcpus" else "")
        + f", {base['duration_ms']:g} ms simulated, {summary['sweep']['seeds']} seed(s): mean ± std",
        fontsize=10,
    )  # fmt: skip
    shown: list[float] = []
    for ax, panel in zip(axes[0], panels, strict=True):
        for lock in summary["sweep"]["locks"]:
            xs, ys, errs = [], [], []
            color, marker = LOCK_STYLES.get(lock, (None, "x"))
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
            ax.errorbar(
                [xs[i] for i in order], [ys[i] for i in order], yerr=[errs[i] for i in order],
                label=lock, color=color, marker=marker, capsize=3,
            )  # fmt: skip
        ax.set_xlabel(x_param["label"])
        if panel is not None:
            ax.set_title(f"{params[1]['label']} = {panel:g}", fontsize=10)
        shown.extend(y for line in ax.get_lines() for y in line.get_ydata() if y > 0)
        if metric == "throughput":
            ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    if log and shown and max(shown) > 10 * min(shown):  # a log axis only when values span a decade
        for ax in axes[0]:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=8)
    return fig
