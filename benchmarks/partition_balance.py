"""What the partitioned check (``pvspin check --jobs N``) can gain beyond this machine's 2 cores.

The exhaustive search gives each state to the worker its place picks (World.state_place,
pvspin.check.partitioned.owner_of).  This runs the search once, in one process, counts the
states of each place and the moves between places, and prints, for N workers, the share of
the largest worker, the moves that cross to another worker (each one a state sent there),
and the speed-up the share allows: an upper bound, which assumes that the workers never wait
for one another and that a crossing costs nothing.  ``--crossing-cost`` (how many states'
work one crossing costs, as measured side by side with bench_parallel.py) turns it into an
estimate.

    .venv/bin/python benchmarks/partition_balance.py --lock qspinlock --cpus 3 --acquisitions 3
"""

from __future__ import annotations

import argparse
from collections import Counter

from pvspin.check import partitioned
from pvspin.check.runner import CheckOptions, build_world


class Tally(partitioned.Partition):
    """One worker owning every state; counts states by place and moves by the places they join."""

    def __init__(self, opts):
        super().__init__(opts, 0, 1)
        self.place_of: dict[int, int] = {}  # state -> its place
        self.by_place: Counter = Counter()
        self.moves: Counter = Counter()  # (place, place) -> moves between them

    def _push(self, h, placed, edge=None):
        place = placed[2]
        self.place_of[h] = place  # each own state is pushed once, when it is first met
        self.by_place[place] += 1
        return super()._push(h, placed, edge)

    def _advance(self, out):
        edges = len(self.edges[0])
        found = super()._advance(out)
        if len(self.edges[0]) > edges:  # a move was made: it is the last edge
            self.moves[self.place_of[self.edges[0][-1]], self.place_of[self.edges[1][-1]]] += 1
        return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", default="qspinlock")
    parser.add_argument("--cpus", type=int, default=3)
    parser.add_argument("--acquisitions", type=int, default=3)
    parser.add_argument("--workers", default="1,2,3,4,6,8,10,16")
    parser.add_argument("--crossing-cost", type=float, default=0.0, help="a crossing's cost in states' work")
    a = parser.parse_args()
    opts = CheckOptions(lock=a.lock, cpus=a.cpus, acquisitions=a.acquisitions)
    tally = Tally(opts)
    world = build_world(opts)
    tally.step([partitioned.pack([([], world.export_state(), None, None)])])
    while tally.stack or tally.inbox:
        tally.step([])
    states = sum(tally.by_place.values())
    print(f"{a.lock} {a.cpus} x {a.acquisitions}: {states:,} states, {tally.transitions:,} transitions")
    print(f"{len(tally.by_place):,} places")
    print("workers  largest share  crossings  speed-up bound  estimate")
    owner = partitioned.owner_of
    for n in (int(w) for w in a.workers.split(",")):
        shares = Counter()
        for place, count in tally.by_place.items():
            shares[owner(place, n)] += count
        largest = max(shares.values()) / states
        crossings = sum(k for (p, q), k in tally.moves.items() if owner(p, n) != owner(q, n))
        # the largest worker's time, in states' work: its share, and its share of the crossings' cost
        estimate = 1 / (largest * (1 + crossings / states * a.crossing_cost))
        print(f"{n:7d}  {largest:13.1%}  {crossings / tally.transitions:9.1%}  {1 / largest:14.2f}  {estimate:8.2f}")


if __name__ == "__main__":
    main()
