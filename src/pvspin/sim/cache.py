"""Cache-coherence cost model: per line an owner, a set of sharers, and a busy-until time.

This is what separates test-and-set from queued locks: a line written by one core and
read by another moves between caches, each move costs a transfer, and moves of one line
serialize (a line is in one place at a time), so N spinners hammering one word queue up
behind each other while MCS waiters each spin on a line of their own.

Caches belong to *physical* CPUs: a vCPU that migrates, or shares its pCPU with another
vCPU, finds its lines cold.  pCPUs sit on sockets: a transfer between sockets costs more
than one within a socket, so a contended test-and-set lock tends to stay on the socket
that has it — the source of the per-thread spreads measured for unfair locks on
multi-socket machines.  Lines are keyed by ``(memory space, line number)`` folded into one
integer, so guests with separate memories never share lines.
"""

from __future__ import annotations

import random

from .config import Costs


class CacheModel:
    """MSI-style coherence with costs: ``read`` / ``write`` return when the access completes."""

    __slots__ = (
        "owner", "sharers", "busy", "hit_load", "hit_store", "rmw", "near", "far", "dram", "occupancy",
        "transfers", "jitter", "rand", "socket_mask",
    )  # fmt: skip

    def __init__(self, costs: Costs, rng: random.Random, socket_of: list[int]):
        self.owner: dict[int, int] = {}  # line -> agent holding it Modified (absent: none)
        self.sharers: dict[int, int] = {}  # line -> bitmask of agents holding a copy
        self.busy: dict[int, int] = {}  # line -> cycle until which a transfer occupies it
        self.hit_load = costs.l1_hit
        self.hit_store = costs.store_hit
        self.rmw = costs.locked_rmw
        self.near = costs.remote_transfer
        self.far = costs.cross_socket_transfer
        self.dram = costs.memory_fetch
        self.occupancy = costs.line_occupancy
        self.transfers = 0
        self.jitter = costs.transfer_jitter
        self.rand = rng.random
        # per agent: bitmask of the agents on its socket
        masks: dict[int, int] = {}
        for agent, socket in enumerate(socket_of):
            masks[socket] = masks.get(socket, 0) | (1 << agent)
        self.socket_mask = [masks[socket] for socket in socket_of]

    def _move(self, line: int, now: int, latency: int) -> int:
        """Serialize a transfer of ``line`` behind earlier ones; return its completion."""
        start = self.busy.get(line, 0)
        if start < now:
            start = now
        self.busy[line] = start + self.occupancy
        self.transfers += 1
        if self.jitter:
            latency += int(self.rand() * (self.jitter + 1))
        return start + latency

    def read(self, agent: int, line: int, now: int) -> int:
        bit = 1 << agent
        sharers = self.sharers.get(line, 0)
        if sharers & bit:
            return now + self.hit_load
        if not sharers:
            latency = self.dram
        else:  # served by the nearest copy (the owner's, if Modified)
            latency = self.near if sharers & self.socket_mask[agent] else self.far
            if line in self.owner:  # M -> S: the owner keeps a shared copy
                del self.owner[line]
        self.sharers[line] = sharers | bit
        return self._move(line, now, latency)

    def write(self, agent: int, line: int, now: int, locked: bool) -> int:
        bit = 1 << agent
        extra = self.rmw if locked else 0
        sharers = self.sharers.get(line, 0)
        if sharers == bit:  # held alone (Modified or Exclusive): a hit
            self.owner[line] = agent
            return now + (self.hit_load if locked else self.hit_store) + extra
        if not sharers:
            latency = self.dram
        else:  # fetch-for-ownership: every other copy must go, the farthest sets the cost
            latency = self.far if sharers & ~self.socket_mask[agent] else self.near
        self.owner[line] = agent
        self.sharers[line] = bit
        return self._move(line, now, latency) + extra
