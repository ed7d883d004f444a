"""The timed engine: determinism, tie-breaking by the scheduler, event-driven spinning."""

import hashlib

import pytest

from pvspin.machine import ops as o
from pvspin.machine.memory import CACHE_LINE, Memory
from pvspin.machine.scheduler import RandomScheduler
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


def test_bounded_spin_times_out_after_its_bound_of_loads():
    """bound=1000 is 1000 evaluations: the first load, then 999 PAUSE + load turns of spinning."""
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
    assert v.acct[T_SPIN] == 999 * loop


def test_negative_duration_is_refused():
    sim = Simulator(HostConfig(pcpus=1))
    with pytest.raises(ValueError, match="negative"):
        sim.run(-5)


class LoggingScheduler(RandomScheduler):
    """A seeded random scheduler that logs the questions it is asked."""

    def __init__(self, seed):
        super().__init__(seed)
        self.asked = []

    def next_cpu(self, runnable, current):
        self.asked.append(tuple(runnable))
        return super().next_cpu(runnable, current)


def idle():
    yield o.work(10**9)


def simultaneous_completions(stale: tuple, behind: str, as_block: bool):
    """Completions at one cycle: three deferred by a tie-break (``stale`` says which went stale
    since), then ``behind`` them: another completion, another deferred block, or an event of
    another kind.  Returns who completed in which order, what the scheduler was asked and how
    many events fired, with the three as one block event or as three events."""
    completed = []
    scheduler = LoggingScheduler(3)
    sim = Simulator(HostConfig(pcpus=6), seed=0, scheduler=scheduler,
                    recorder=lambda t, vcpu, code, result: completed.append(vcpu))  # fmt: skip
    sim.add_guest("g0", Memory(), [idle() for _ in range(6)])
    sim.run(0)  # every vCPU on its pCPU, its one operation pending until 10**9
    cpus, loop, vs = sim.guest_cpus, sim.loop, sim.vcpus
    deferred = [(v, v.gen - 1 if gone else v.gen) for v, gone in zip(vs[:3], stale, strict=True)]
    if as_block:
        loop.at(100, cpus.on_ties, deferred, None)
    else:
        for v, gen in deferred:
            loop.at(100, cpus.on_step, v, gen)
    if behind == "completion":
        loop.at(100, cpus.on_step, vs[3], vs[3].gen)
    elif behind == "block":
        loop.at(100, cpus.on_ties, [(vs[4], vs[4].gen), (vs[5], vs[5].gen)], None)
    else:
        loop.at(100, lambda *_: completed.append("other"), None, None)
        loop.at(100, cpus.on_step, vs[3], vs[3].gen)
    events = loop.events
    sim.run(100)
    return completed, scheduler.asked, loop.events - events


@pytest.mark.parametrize("behind", ["completion", "block", "other event"])
@pytest.mark.parametrize("stale", [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)])
def test_deferred_tie_completions_fire_as_the_events_they_stand_for(stale, behind):
    """A tie-break defers the losers as one event; it must fire exactly as the consecutive
    events it stands for would: same completions in the same order, same questions to the
    scheduler, same event count (stale ones are counted where they reach the head, not where a
    tie-break sweeps them up)."""
    as_events = simultaneous_completions(stale, behind, as_block=False)
    assert simultaneous_completions(stale, behind, as_block=True) == as_events
    assert len([c for c in as_events[0] if c != "other"]) == 3 - sum(stale) + (2 if behind == "block" else 1)
