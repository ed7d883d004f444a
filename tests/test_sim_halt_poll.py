"""KVM's halt polling (``kvm_vcpu_halt``): a halting vCPU alone on its pCPU busy-waits there up to
its own ``halt_poll_ns`` before it blocks; the poll time adapts per vCPU (grow from 10 µs, double,
reset after a long halt); a task queued on the pCPU ends the poll; bare metal has none."""

import pytest

from pvspin.machine import ops as o
from pvspin.machine.memory import CACHE_LINE, Memory
from pvspin.sim.config import HostConfig, Scheduling
from pvspin.sim.engine import Simulator
from pvspin.sim.scenario import BadInput, scenario_from
from pvspin.sim.vcpu import HALTED, T_HALT, T_HV
from simple_locks import WORD


def host(pcpus, **kw):
    return HostConfig(pcpus=pcpus, scheduling=Scheduling(ple=False), **kw)


def ping_pong(delays_us: list[int], **kw):
    """vCPU0 halts until vCPU1, on its own pCPU, sets the word and kicks it, ``delays_us[i]`` after
    vCPU0 cleared it: a halt of about that delay plus the kick, once per delay."""
    mem = Memory()
    w = mem.alloc(WORD, "w", align=CACHE_LINE)
    rounds = len(delays_us)

    def sleeper():
        for _ in range(rounds):
            yield o.pv_wait(w.locked, 0)
            yield o.WRITE_ONCE(w.locked, 0)

    def waker():
        for delay in delays_us:
            yield o.work(delay * 2500)
            yield o.WRITE_ONCE(w.locked, 1)
            yield o.pv_kick(0)
            yield o.smp_cond_load_relaxed(w.locked, lambda v: v == 0)

    sim = Simulator(host(2, **kw), seed=0)
    guest = sim.add_guest("g0", mem, [sleeper(), waker()])
    sim.run(10**9)
    return sim, guest


def halt_then_kick(kick_after: int, poll_ns: int = 0, **kw):
    """vCPU0 halts at once, with a poll time of ``poll_ns`` (as if grown by earlier short halts);
    vCPU1, on its own pCPU, kicks it ``kick_after`` cycles later."""
    mem = Memory()
    w = mem.alloc(WORD, "w", align=CACHE_LINE)

    def sleeper():
        yield o.pv_wait(w.locked, 0)

    def kicker():
        yield o.work(kick_after)
        yield o.pv_kick(0)

    sim = Simulator(host(2, **kw), seed=0)
    guest = sim.add_guest("g0", mem, [sleeper(), kicker()])
    sim.vcpus[0].halt_poll = sim.costs.ns(poll_ns)
    sim.run(10**8)
    return sim, guest


def test_the_poll_grows_from_10_us_doubling_until_it_catches_the_kick():
    """Each halt lasts the 20 µs delay and the 7.4 µs kick: polls of 10 and 20 µs miss it and the
    vCPU blocks (woken then a kick-to-run later), a poll of 40 µs catches it and keeps that size."""
    sim, guest = ping_pong([20] * 6)
    v0 = sim.vcpus[0]
    assert v0.halts == 6
    assert guest.halt_attempted_poll == 5  # the first halt had no poll time yet
    assert guest.halt_successful_poll == 3  # the 40 µs polls
    assert v0.halt_poll == sim.costs.ns(40_000)
    # a caught halt ends a VM entry after the kick, where a blocked one waits out its idle pCPU
    assert guest.lock_events["pv_kick_wake"] == 6
    assert guest.lock_events["pv_latency_wake"] < 3 * sim.costs.kick_wake_ns + 3 * 10_000


def test_a_halt_longer_than_the_limit_resets_the_poll_time():
    sim, guest = ping_pong([20, 20, 20, 20, 300])
    assert guest.halt_attempted_poll == 4 and guest.halt_successful_poll == 1
    assert sim.vcpus[0].halt_poll == 0  # halt_poll_ns_shrink = 0: back to no poll


def test_halt_poll_ns_0_never_polls():
    _, guest = ping_pong([20] * 4, halt_poll_ns=0)
    assert guest.halt_attempted_poll == 0


def test_halts_longer_than_the_limit_never_grow_a_poll():
    """KVM grows the poll time only after a halt shorter than ``halt_poll_ns``: blocked halts of
    20 µs plus the kick-to-run time stay above a 50 µs limit, so no poll ever starts."""
    _, guest = ping_pong([20] * 6, halt_poll_ns=50_000)
    assert guest.halt_attempted_poll == 0


def test_the_poll_time_grows_to_the_limit_and_no_further():
    sim, _ = halt_then_kick(0, halt_poll_ns=30_000)
    v = sim.vcpus[0]
    ns = sim.costs.ns
    for poll, halted, grown in [(0, 25_000, 10_000), (10_000, 25_000, 20_000), (20_000, 25_000, 30_000),
                                (30_000, 25_000, 30_000), (30_000, 40_000, 0)]:  # fmt: skip
        v.halt_poll, v.halt_start = ns(poll), 0
        sim.hv._adapt_halt_poll(v, ns(halted))
        assert v.halt_poll == ns(grown), (poll, halted)


def test_a_kick_caught_while_polling_keeps_the_vcpu_on_its_pcpu():
    """No block, no wake-up: the polling time is the hypervisor's, on the vCPU's pCPU."""
    sim, guest = halt_then_kick(100_000, poll_ns=200_000)
    v0 = sim.vcpus[0]
    assert guest.halt_attempted_poll == guest.halt_successful_poll == 1
    assert v0.acct[T_HALT] == 0
    kick = sim.costs.ns(sim.costs.kick_hypercall_ns)
    assert 100_000 + kick - 1_000 <= v0.acct[T_HV] <= 100_000 + kick + sim.costs.vm_exit
    assert guest.lock_events["pv_latency_wake"] == sim.costs.kick_hypercall_ns + sim.costs.vm_exit * 1000 // 2500


def test_a_vcpu_queued_behind_a_polling_one_ends_its_poll_and_runs():
    """``single_task_running()``: vCPU0, kicked awake, is queued on pCPU0, where vCPU2 polls; vCPU2
    blocks at once and vCPU0 runs after the exit, not after vCPU2's 200 µs poll."""
    mem = Memory()
    w = mem.alloc(WORD, "w", align=CACHE_LINE)

    def halter():
        yield o.pv_wait(w.locked, 0)

    def kicker():
        yield o.work(50_000)
        yield o.pv_kick(0)
        yield o.work(1_000_000)

    sim = Simulator(host(2), seed=0)
    guest = sim.add_guest("g0", mem, [halter(), kicker(), halter()])  # vCPU2 queued on pCPU0 behind vCPU0
    v0, _, v2 = sim.vcpus
    v2.halt_poll = sim.costs.ns(200_000)
    sim.run(400_000)
    assert guest.halt_attempted_poll == 1 and guest.halt_successful_poll == 0
    assert v2.state == HALTED
    assert v2.acct[T_HV] < 80_000  # it polled until vCPU0 was queued, at the kick (~68,500 cycles)
    assert v0.halts == 1 and v0.ops == 1  # its pv_wait returned: it ran again within the window


def test_bare_metal_refuses_a_poll_time_in_one_line():
    with pytest.raises(BadInput) as err:
        scenario_from(None, {"host": {"hypervisor": "baremetal", "halt_poll_ns": 1000}})
    assert "\n" not in str(err.value) and "halt_poll_ns" in str(err.value)
    assert HostConfig(hypervisor="baremetal").halt_poll_max_ns == 0
    assert HostConfig().halt_poll_max_ns == 200_000 == HostConfig(hypervisor="kvm-nopv").halt_poll_max_ns
