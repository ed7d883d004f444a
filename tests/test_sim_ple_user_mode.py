"""Which siblings a pause-loop exit may boost: ``kvm_vcpu_on_spin(me, yield_to_kernel_mode=true)``
skips a vCPU preempted in guest user mode; the workload spends ``user_fraction`` of its delays there."""

import pytest

from pvspin.machine import ops as o
from pvspin.machine.memory import CACHE_LINE, Memory
from pvspin.sim.config import HostConfig, Scheduling
from pvspin.sim.engine import Simulator
from pvspin.sim.guestcpu import GuestCpus
from pvspin.sim.scenario import BadInput, Run, Scenario, scenario_from
from pvspin.sim.trace import NullTracer
from pvspin.sim.vcpu import EXIT_PAUSE, RUNNABLE, RUNNING
from simple_locks import WORD, tas_lock, tas_unlock

SLICE = 20_000_000  # one pCPU, three vCPUs: CFS's slice is a third of the 24 ms latency, 8 ms


class Boosts(NullTracer):
    """At each pause-loop exit: the sibling KVM asks to boost, and those preempted in user mode."""

    def __init__(self):
        self.exits = []  # (target name or "-", [names of siblings runnable and preempted in user mode])

    def exit_begin(self, t, v, reason, args=None):
        if reason == EXIT_PAUSE:
            in_user = [str(u) for u in v.guest.vcpus
                       if u.state == RUNNABLE and u.preempted and GuestCpus.in_user_mode(u)]  # fmt: skip
            self.exits.append((args["yield_to"], in_user))

    def vcpu_state(self, t, vcpu, state):
        pass

    def pcpu(self, t, pcpu, vcpu):
        pass

    def spin(self, t, vcpu, on):
        pass

    def instant(self, t, vcpu, name, args=None):
        pass


def three_on_one_pcpu(user_mode: bool):
    """vCPU0 is preempted in its delay, vCPU1 holding the lock; then vCPU2 spins on it.

    vCPU0 comes first in the round robin from ``last_boosted_vcpu`` (-1 at boot).  vCPU2 works
    most of a slice before it takes the lock, so that CFS finds the others within a wake-up
    granularity and honours the boost.
    """
    mem = Memory()
    w = mem.alloc(WORD, "lock0", align=CACHE_LINE)

    def thinker():
        yield o.work(3 * SLICE, o.WORK_USER if user_mode else o.WORK_GUEST)

    def holder():
        yield from tas_lock(w)
        yield o.cs_enter(0)
        yield o.work(SLICE + SLICE // 2, o.WORK_CS)
        yield o.cs_exit(0)
        yield from tas_unlock(w)

    def spinner():
        yield o.work(SLICE * 3 // 4)
        yield from tas_lock(w)
        yield from tas_unlock(w)

    log = Boosts()
    sim = Simulator(HostConfig(pcpus=1, scheduling=Scheduling(ple=True)), seed=0, tracer=log)
    guest = sim.add_guest("g0", mem, [thinker(), holder(), spinner()])
    sim.run(10 * SLICE)
    assert guest.mutex_failures == 0 and guest.lock_holder_preemptions >= 1
    return sim, log


def test_a_sibling_preempted_in_user_mode_is_passed_over_for_the_holder():
    sim, log = three_on_one_pcpu(user_mode=True)
    assert log.exits[0] == ("g0/vcpu1", ["g0/vcpu0"])  # vCPU0 came first, and was skipped
    assert all(target not in in_user for target, in_user in log.exits)
    spinner = sim.vcpus[2]
    assert spinner.ple_exits == 1  # the holder ran at once, released, and the spinner had the lock


def test_the_same_sibling_preempted_in_the_kernel_is_boosted():
    sim, log = three_on_one_pcpu(user_mode=False)
    assert log.exits[0] == ("g0/vcpu0", [])
    assert sim.vcpus[2].ple_exits > 1  # boosting the wrong vCPU: the spinner exits again


def locktorture(user_fraction: float, tracer):
    scenario = Scenario.model_validate({
        "duration_ms": 4, "host": {"pcpus": 4},
        "guests": [{"vcpus": 8, "lock": "qspinlock", "workload": {"user_fraction": user_fraction}}],
    })  # fmt: skip
    return Run(scenario, tracer=tracer).run()


def test_locktorture_with_user_mode_delays_never_boosts_a_vcpu_preempted_in_user_mode():
    log = Boosts()
    result = locktorture(1.0, log)
    boosted = [(t, u) for t, u in log.exits if t != "-"]
    assert len(boosted) > 10
    assert sum(1 for _, in_user in log.exits if in_user) > 10  # the rule had vCPUs to pass over
    assert all(target not in in_user for target, in_user in boosted)
    assert result["guests"][0]["fail"] == 0


def test_only_user_mode_delays_leave_vcpus_preempted_in_user_mode():
    kernel = Boosts()
    locktorture(0.0, kernel)
    assert all(not in_user for _, in_user in kernel.exits)
    half = Boosts()
    locktorture(0.5, half)
    assert any(in_user for _, in_user in half.exits)


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_a_user_fraction_outside_0_1_is_refused_in_one_line(bad):
    with pytest.raises(BadInput) as err:
        scenario_from(None, {"guests": [{"workload": {"user_fraction": bad}}]})
    assert "\n" not in str(err.value) and "user_fraction" in str(err.value)


def short():
    yield o.work(1)


@pytest.mark.parametrize(("irq_pending", "boosted"), [(False, "g0/vcpu2"), (True, "g0/vcpu1")])
def test_an_interrupt_waiting_for_a_vcpu_preempted_in_user_mode_makes_it_a_candidate(irq_pending, boosted):
    """``kvm_arch_dy_has_pending_interrupt``: the spinner may be waiting for that very interrupt."""
    sim = Simulator(HostConfig(pcpus=1), seed=0)
    guest = sim.add_guest("g0", Memory(), [short() for _ in range(3)])
    me, in_user, in_kernel = guest.vcpus
    me.state = RUNNING
    for u, kernel_mode in ((in_user, False), (in_kernel, True)):
        u.state, u.preempted, u.preempted_in_kernel = RUNNABLE, True, kernel_mode
    in_user.irq_pending = irq_pending
    asked = []
    sim.sched.yield_to = lambda v, target, t: asked.append(str(target)) or True
    sim.hv.ple_exit(me, 0)
    assert asked == [boosted]
