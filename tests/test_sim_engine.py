"""The timed engine: determinism, tie-breaking by the scheduler, event-driven spinning."""

import hashlib

import pytest

from pvspin.machine import ops as o
from pvspin.machine.memory import CACHE_LINE, Memory
from pvspin.sim.config import HostConfig, Scheduling
from pvspin.sim.engine import Simulator
from pvspin.sim.vcpu import T_SPIN
from simple_locks import WORD, locker, tas_lock, tas_unlock, ticket_lock, ticket_unlock


class Digest:
    """Hashes every completed operation: two runs with equal digests took the same path."""

    def __init__(self):
        self.h = hashlib.blake2b(digest_size=16)

    def __call__(self, t, vcpu, code, result):
        self.h.update(f"{t}:{vcpu}:{code}:{result};".encode())

    def hexdigest(self):
        return self.h.hexdigest()


def contended_run(seed, vcpus=6, pcpus=3, cycles=3_000_000, lock=(ticket_lock, ticket_unlock)):
    mem = Memory()
    word = mem.alloc(WORD, "lock0", align=CACHE_LINE)
    digest = Digest()
    sim = Simulator(HostConfig(pcpus=pcpus), seed=seed, recorder=digest)
    guest = sim.add_guest("g0", mem, [locker(word, 0, *lock, hold=300, delay=200) for _ in range(vcpus)])
    sim.run(cycles)
    return sim, guest, digest.hexdigest()


def test_same_seed_gives_an_identical_trace():
    a = contended_run(seed=7)
    b = contended_run(seed=7)
    assert a[2] == b[2]
    assert [v.acct for v in a[0].vcpus] == [v.acct for v in b[0].vcpus]


def test_another_seed_gives_another_schedule():
    digests = {contended_run(seed=s, lock=(tas_lock, tas_unlock))[2] for s in range(3)}
    assert len(digests) > 1


def test_mutual_exclusion_holds_under_contention():
    sim, guest, _ = contended_run(seed=1)
    assert guest.mutex_failures == 0
    assert sum(v.cs_entries for v in guest.vcpus) > 100


def test_spinning_longer_does_not_cost_more_events_per_handoff():
    """A spinner is woken by writes, not polled: event count tracks hand-offs, not spin time."""

    def events_per_acquisition(hold):
        mem = Memory()
        word = mem.alloc(WORD, "lock0", align=CACHE_LINE)
        host = HostConfig(pcpus=2, scheduling=Scheduling(ple=False))
        sim = Simulator(host, seed=3)
        guest = sim.add_guest(
            "g0", mem, [locker(word, 0, ticket_lock, ticket_unlock, hold, 50, rounds=40) for _ in range(2)]
        )
        sim.run(10**10)
        acquisitions = sum(v.cs_entries for v in guest.vcpus)
        assert acquisitions == 80
        spin = sum(v.acct[T_SPIN] for v in guest.vcpus)
        return sim.events / acquisitions, spin

    short_events, short_spin = events_per_acquisition(1_000)
    long_events, long_spin = events_per_acquisition(100_000)
    assert long_spin > 50 * short_spin  # the waiters really spun ~100x longer ...
    assert long_events <= short_events * 1.05  # ... at no extra engine cost


def test_bounded_spin_times_out_after_bound_times_loop_cost():
    mem = Memory()
    word = mem.alloc(WORD, "w", align=CACHE_LINE)
    seen = {}

    def prog():
        seen["value"] = yield o.smp_cond_load_relaxed(word.val, lambda v: v == 1, bound=1000)
        seen["t"] = yield o.READ_ONCE(word.val)

    sim = Simulator(HostConfig(pcpus=1, scheduling=Scheduling(ple=False)), seed=0)
    sim.add_guest("g0", mem, [prog()])
    sim.run(10**9)
    v = sim.vcpus[0]
    assert seen["value"] == 0
    loop = sim.costs.pause + sim.costs.l1_hit
    assert v.acct[T_SPIN] == 1000 * loop


def test_negative_duration_is_refused():
    sim = Simulator(HostConfig(pcpus=1))
    with pytest.raises(ValueError, match="negative"):
        sim.run(-5)
