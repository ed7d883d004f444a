"""The published shapes (shared/reference/published-figures.md), judged on the overcommit sweep.

    python experiments/shapes.py docs/figures            # markdown report on stdout

Reads ``<dir>/overcommit/summary.json`` (``make -C experiments overcommit``; and the light-contention
``overcommit-light`` and the ``contention-1x`` / ``tas-delay`` / ``vm-overcommit`` / ``stealing`` / ``kbuild`` / ``kick-boost`` sweeps when
present) and states, for each shape, the criterion as written in the issue, the measured numbers
(means over seeds), and whether it holds.  The thresholds below are the issue's words made literal; nothing here is tuned.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

FIFO_LOCKS = ("qspinlock", "ticket")  # fair locks without PV
QUEUED_LOCKS = ("qspinlock", "pvqspinlock", "pvqspinlock-4.2", "ticket")
CLEARLY_AHEAD = 1.25  # "clearly ahead": at least 25% more throughput
FEW_PERCENT = 0.05  # "within a few percent"
KEEPS_THROUGHPUT = 2 / 3  # "keeps throughput": at least 2/3 of its 1x figure at every overcommit
SPREAD_FACTOR = 10  # "at least ten times the queued locks' spread"
MOST_HALTS = 2  # "most halts at non-head nodes": pv_wait_node at least twice pv_wait_head


@dataclass
class Verdict:
    shape: str
    criterion: str
    numbers: list[str]
    holds: bool


def load(summary_path: Path) -> tuple[dict, list[float]]:
    """{(lock, overcommit): aggregate entry} and the overcommit factors, ascending."""
    summary = json.loads(summary_path.read_text())
    table = {(e["lock"], float(e["overcommit"])): e for e in summary["aggregate"]}
    return table, sorted({k[1] for k in table})


def mean(table: dict, lock: str, factor: float, metric: str) -> float | None:
    entry = table.get((lock, factor))
    if entry is None or metric not in entry:
        return None
    return entry[metric]["mean"]


def judge(table: dict, factors: list[float]) -> list[Verdict]:
    over = [f for f in factors if f > 1]
    t = lambda lock, f: mean(table, lock, f, "throughput")  # noqa: E731
    verdicts = []

    # 1. FIFO without PV loses more than the overcommit factor.
    numbers, holds = [], True
    for lock in FIFO_LOCKS:
        if t(lock, 1.0) is None:
            continue
        for f in over:
            loss = t(lock, 1.0) / t(lock, f)
            numbers.append(f"{lock}: T(1x)/T({f:g}x) = {loss:.2f} (factor {f:g})")
            holds &= loss > f
    verdicts.append(Verdict("1. overcommit collapse of FIFO locks", "T(1x)/T(kx) > k for qspinlock and ticket",
                            numbers, holds and bool(numbers)))  # fmt: skip

    # 2. pvqspinlock stays near the factor and is clearly ahead of native qspinlock; 4.2 between or behind.
    numbers, holds = [], True
    if 1.5 in factors:
        ratio = t("pvqspinlock", 1.0) / t("pvqspinlock", 1.5)
        numbers.append(f"pvqspinlock: T(1x)/T(1.5x) = {ratio:.2f} (within 2x of 1.5: 0.75..3)")
        holds &= 0.75 <= ratio <= 3.0
    for f in over:
        ahead = t("pvqspinlock", f) / t("qspinlock", f)
        numbers.append(f"{f:g}x: pvqspinlock ÷ qspinlock = {ahead:.2f}")
        holds &= ahead >= CLEARLY_AHEAD
        if t("pvqspinlock-4.2", f) is not None:
            old = t("pvqspinlock-4.2", f)
            numbers.append(f"{f:g}x: pvqspinlock-4.2 ÷ pvqspinlock = {old / t('pvqspinlock', f):.2f}, "
                           f"÷ qspinlock = {old / t('qspinlock', f):.2f}")  # fmt: skip
            holds &= old <= t("pvqspinlock", f)
    verdicts.append(Verdict(
        "2. PV stays near the overcommit factor",
        f"T(1x)/T(1.5x) in [0.75, 3]; pvqspinlock >= {CLEARLY_AHEAD}x qspinlock at every k > 1; "
        "4.2 variant <= modern", numbers, holds))  # fmt: skip

    # 3. Without overcommit PV buys nothing.
    ratio = t("pvqspinlock", 1.0) / t("qspinlock", 1.0)
    verdicts.append(Verdict("3. no overcommit: PV buys nothing", f"pvqspinlock ÷ qspinlock within 1 ± {FEW_PERCENT:.2f} at 1x",
                            [f"1x: pvqspinlock ÷ qspinlock = {ratio:.3f}"], abs(ratio - 1) <= FEW_PERCENT))  # fmt: skip

    # 4. Virt TAS keeps throughput but is unfair.
    numbers, holds = [], True
    for f in over:
        kept = t("virt-tas", f) / t("virt-tas", 1.0)
        tas = mean(table, "virt-tas", f, "fairness_max_over_min")
        queued = max(mean(table, lock, f, "fairness_max_over_min") or 0 for lock in QUEUED_LOCKS)
        starved = table[("virt-tas", f)]["starved_seeds"]
        numbers.append(f"{f:g}x: virt-tas keeps {kept:.2f} of its 1x throughput; max÷min {tas:.2f}"
                       + (f" ({starved} seed(s) with a starved vCPU)" if starved else "")
                       + f" vs worst queued lock {queued:.2f}")  # fmt: skip
        holds &= kept >= KEEPS_THROUGHPUT and (starved > 0 or tas >= SPREAD_FACTOR * queued)
    verdicts.append(Verdict(
        "4. virt TAS keeps throughput, unfairly",
        f"T(kx)/T(1x) >= {KEEPS_THROUGHPUT:.2f} and max÷min >= {SPREAD_FACTOR}x the queued locks' at every k > 1",
        numbers, holds))  # fmt: skip

    # 5. Most halts at non-head nodes.
    numbers, holds = [], True
    for f in over:
        node = mean(table, "pvqspinlock", f, "pv_wait_node")
        head = mean(table, "pvqspinlock", f, "pv_wait_head")
        numbers.append(f"{f:g}x: pv_wait_node {node:,.0f}, pv_wait_head {head:,.0f}")
        holds &= node >= MOST_HALTS * max(head, 1)
    verdicts.append(Verdict("5. most halts at non-head nodes", f"pv_wait_node >= {MOST_HALTS} x pv_wait_head",
                            numbers, holds))  # fmt: skip
    return verdicts


def report(verdicts: list[Verdict], summary_path: Path) -> str:
    lines = [f"Shapes judged on `{summary_path}` (means over seeds; regenerate: `make -C experiments shapes`).", "",
             "| shape | criterion | measured | holds |", "|---|---|---|---|"]  # fmt: skip
    for v in verdicts:
        lines.append(f"| {v.shape} | {v.criterion} | {'<br>'.join(v.numbers)} | {'yes' if v.holds else '**no**'} |")
    return "\n".join(lines) + "\n"


def contention_table(summary_path: Path) -> str:
    """Shape 3 in detail: pvqspinlock ÷ qspinlock at 1x against the delay between acquisitions."""
    entries = json.loads(summary_path.read_text())["aggregate"]
    t = {(e["lock"], e["delay-ns"]): e for e in entries}
    lines = [f"PV's cost without overcommit against contention (`{summary_path}`):", "",
             "| delay between acquisitions (ns) | qspinlock acq/s | pvqspinlock acq/s | PV ÷ native | "
             "qspinlock via pending | pvqspinlock via pending |", "|---|---|---|---|---|---|"]  # fmt: skip
    for delay in sorted({d for _, d in t}):
        q, pv = t[("qspinlock", delay)], t[("pvqspinlock", delay)]
        ratio = pv["throughput"]["mean"] / q["throughput"]["mean"]
        via = lambda e: e["lock_pending"]["mean"] / max(1, e["acquisitions"]["mean"])  # noqa: E731
        lines.append(f"| {delay:g} | {q['throughput']['mean']:,.0f} | {pv['throughput']['mean']:,.0f} | {ratio:.3f} "
                     f"| {via(q):.0%} | {via(pv):.0%} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _spread(entry: dict) -> str:
    """An entry's max ÷ min per vCPU, mean over seeds; inf when no seed had every vCPU take the lock."""
    spread = entry.get("fairness_max_over_min")
    return "inf" if spread is None else format(spread["mean"], ".2f")


def fairness_table(summary_path: Path, title: str) -> str:
    """Shape 4 in detail: per-vCPU max ÷ min for every lock and point of a sweep."""
    summary = json.loads(summary_path.read_text())
    params = [p["name"] for p in summary["sweep"]["params"]]
    entries = summary["aggregate"]
    lines = [f"{title} (`{summary_path}`):", "",
             f"| lock | {' | '.join(params)} | acq/s | max ÷ min (mean over seeds) | seeds with a starved vCPU |",
             "|---|" + "---|" * (len(params) + 3)]  # fmt: skip
    for e in sorted(entries, key=lambda e: (e["lock"], *(e[p] for p in params))):
        cells = " | ".join(f"{e[p]:g}x" if p == "overcommit" else f"{e[p]:g}" for p in params)
        lines.append(f"| {e['lock']} | {cells} | {e['throughput']['mean']:,.0f} | "
                     f"{_spread(e)} | {e['starved_seeds']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def stealing_table(summary_path: Path) -> str:
    """Stealing and fairness against overcommit: pv_lock_stealing / acquisitions, and max / min per vCPU."""
    entries = json.loads(summary_path.read_text())["aggregate"]
    lines = [f"Lock stealing and fairness against overcommit (`{summary_path}`):", "",
             "| lock | overcommit | acq/s | taken by stealing (pv_lock_stealing ÷ acquisitions) | max ÷ min | "
             "seeds with a starved vCPU |", "|---|---|---|---|---|---|"]  # fmt: skip
    for e in sorted(entries, key=lambda e: (e["lock"], e["overcommit"])):
        stealing = e.get("pv_lock_stealing")
        share = "-" if stealing is None or e["lock"] == "virt-tas" else \
            f"{stealing['mean'] / max(1, e['acquisitions']['mean']):.1%}"
        lines.append(f"| {e['lock']} | {e['overcommit']:g}x | {e['throughput']['mean']:,.0f} | {share} | "
                     f"{_spread(e)} | {e['starved_seeds']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def kbuild_table(summary_path: Path) -> str:
    """Build completion time per lock against vCPUs and pCPUs, and its ratios to the 1x builds."""
    entries = json.loads(summary_path.read_text())["aggregate"]
    done = {(e["lock"], e["vcpus"], e["pcpus"]): e for e in entries}
    time = lambda lock, v, p: (done.get((lock, v, p)) or {}).get("completion_ms", {}).get("mean")  # noqa: E731
    lines = [f"Kernel-build-like completion time (`{summary_path}`; ms, mean over seeds):", "",
             "| lock | 32 on 32 | 48 on 32 | 64 on 32 | 48 on 48 | 64 on 64 | 48 on 32 ÷ 32 on 32 | "
             "48 on 32 ÷ 48 on 48 | 64 on 32 ÷ 64 on 64 |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for lock in sorted({k[0] for k in done}):
        cells = [time(lock, v, p) for v, p in ((32, 32), (48, 32), (64, 32), (48, 48), (64, 64))]
        ms = ["not complete" if c is None else f"{c:.1f}" for c in cells]
        ratio = lambda a, b: "-" if a is None or b is None else f"{a / b:.2f}"  # noqa: E731
        lines.append(f"| {lock} | {' | '.join(ms)} | {ratio(cells[1], cells[0])} | {ratio(cells[1], cells[3])} | "
                     f"{ratio(cells[2], cells[4])} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def kick_boost_table(summary_path: Path, metric: str = "throughput") -> str:
    """``metric`` (acquisitions per second, or a build's completion time) and fairness with KVM's
    kick boost off and on, per host size."""
    entries = json.loads(summary_path.read_text())["aggregate"]
    at = {(e["lock"], e["pcpus"], e["host.kick_boost"]): e for e in entries}
    mean = lambda e, m: e[m]["mean"] if e.get(m) else None  # noqa: E731
    name, form = {"throughput": ("acq/s", ",.0f"), "completion_ms": ("build ms", ".1f")}[metric]
    lines = [f"KVM's kick boost off and on (`{summary_path}`; means over seeds):", "",
             f"| lock | pCPUs | {name}, off | {name}, on | on ÷ off | max ÷ min, off / on | kicks, off / on |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for lock, pcpus in sorted({(k[0], k[1]) for k in at}, key=lambda k: (k[0], -k[1])):
        off, on = at[(lock, pcpus, 0)], at[(lock, pcpus, 1)]
        lines.append(f"| {lock} | {pcpus:g} | {mean(off, metric):{form}} | {mean(on, metric):{form}} | "
                     f"{mean(on, metric) / mean(off, metric):.3f} | {_spread(off)} / {_spread(on)} | "
                     f"{mean(off, 'kicks'):,.0f} / {mean(on, 'kicks'):,.0f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


EXTRA_TABLES = {
    "contention-1x": contention_table,
    "tas-delay": lambda path: fairness_table(path, "Test-and-set fairness against how soon the releaser comes back"),
    "vm-overcommit": lambda path: fairness_table(
        path, "Fairness with the overcommit coming from a CPU-hog VM (4 lock vCPUs + hog_vcpus on 4 pCPUs)"
    ),
    "stealing": stealing_table,
    "kbuild": kbuild_table,
    "kick-boost": kick_boost_table,
    "kick-boost-kbuild": lambda path: kick_boost_table(path, "completion_ms"),
}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: shapes.py FIGURES_DIR (holding overcommit/summary.json)", file=sys.stderr)
        return 2
    path = Path(argv[0]) / "overcommit" / "summary.json"
    if not path.is_file():
        print(f"error: no such file {path} (run `make -C experiments overcommit` first)", file=sys.stderr)
        return 2
    table, factors = load(path)
    print(report(judge(table, factors), path), end="")
    light = Path(argv[0]) / "overcommit-light" / "summary.json"
    if light.is_file():
        table, factors = load(light)
        print("\n" + report(judge(table, factors), light), end="")
    for name, render in EXTRA_TABLES.items():
        extra = Path(argv[0]) / name / "summary.json"
        if extra.is_file():
            print("\n" + render(extra), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
