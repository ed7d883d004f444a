"""KVM's kick boost: after ``KVM_HC_KICK_CPU`` the kicker yields to the vCPU it kicked
(``kvm_sched_yield`` → ``kvm_vcpu_yield_to``), if that one is runnable and the kicker's pCPU has
someone else to run; ``host.kick_boost``, on by default on a KVM host only."""

import json

import pytest

from pvspin.machine import ops as o
from pvspin.machine.memory import CACHE_LINE, Memory
from pvspin.sim.config import HostConfig, Scheduling
from pvspin.sim.engine import Simulator
from pvspin.sim.scenario import BadInput, scenario_from
from pvspin.sim.trace import NullTracer, Tracer
from pvspin.sim.vcpu import EXIT_VMCALL, HALTED, KICK_WOKE, RUNNABLE
from simple_locks import WORD

SLICE = 30_000_000  # one pCPU, two vCPUs: CFS's slice is half the 24 ms latency, 12 ms


class Timeline(NullTracer):
    """Records when each vCPU is switched in, and each kick with its target's state."""

    def __init__(self):
        self.switch_ins = []
        self.kicks = []

    def pcpu(self, t, pcpu, vcpu):
        if vcpu is not None:
            self.switch_ins.append((t, pcpu, str(vcpu)))

    def kick(self, start, t, v, target, kicked, yielded=False):
        self.kicks.append((t, str(v), str(target), HALTED if kicked == KICK_WOKE else target.state, target.preempted))

    def vcpu_state(self, t, vcpu, state):
        pass

    def instant(self, t, vcpu, name, args=None):
        pass


def busy(cycles):
    yield o.work(cycles)


def kicker(before: int):
    yield o.work(before)
    yield o.pv_kick(0)
    yield o.work(4 * SLICE)


def preempted_target_run(kick_boost: bool):
    """One pCPU.  vCPU0 runs a slice and is preempted at its end, runnable; vCPU1 then runs and,
    most of its own slice later (so that CFS finds vCPU0 within a wake-up granularity), kicks it."""
    log = Timeline()
    sim = Simulator(HostConfig(pcpus=1, scheduling=Scheduling(ple=False), kick_boost=kick_boost), seed=0, tracer=log)
    guest = sim.add_guest("g0", Memory(), [busy(4 * SLICE), kicker(SLICE * 5 // 6)])
    sim.run(3 * SLICE)
    return sim, guest, log


def next_run(log: Timeline, who: str, after: int) -> int:
    return min(t for t, _, v in log.switch_ins if v == who and t > after)


def test_a_preempted_vcpu_kicked_runs_at_once_with_the_boost_and_at_the_slice_end_without():
    sim, guest, log = preempted_target_run(kick_boost=True)
    _, guest_off, log_off = preempted_target_run(kick_boost=False)
    # the same kick in both runs, to a vCPU preempted while runnable
    assert [k[:3] for k in log.kicks] == [k[:3] for k in log_off.kicks] and len(log.kicks) == 1
    kick_t, _, _, state, preempted = log.kicks[0]
    assert state == RUNNABLE and preempted
    on, off = next_run(log, "g0/vcpu0", kick_t - 1), next_run(log_off, "g0/vcpu0", kick_t - 1)
    # with the boost: as soon as the kicker's VM exit is over; without: when the kicker's slice ends
    assert on == kick_t + sim.costs.vm_exit
    assert off - kick_t > SLICE // 10
    assert guest.directed_yield_attempted == 1 and guest.kick_yields == 1
    assert guest_off.directed_yield_attempted == 0 and guest_off.kick_yields == 0
    # the kicker's VMCALL exit lasted until it ran again, not just the hypercall's cost
    assert guest.exit_samples[EXIT_VMCALL] == guest_off.exit_samples[EXIT_VMCALL] == 1
    assert guest_off.exit_cycles[EXIT_VMCALL] == sim.hv.kick_cost
    entry = next_run(log, "g0/vcpu1", kick_t) + sim.costs.context_switch  # its VM entry, after the host's switch
    assert guest.exit_cycles[EXIT_VMCALL] == entry - (kick_t - sim.hv.kick_cost)


def halted_target_run(kick_boost: bool):
    """One pCPU: vCPU0 halts at once; vCPU1 works a sixth of a slice (within a wake-up granularity
    of vCPU0's vruntime, so the wake-up does not preempt it), kicks vCPU0 and works on."""
    log = Timeline()
    sim = Simulator(HostConfig(pcpus=1, scheduling=Scheduling(ple=False), kick_boost=kick_boost), seed=0, tracer=log)
    mem = Memory()
    w = mem.alloc(WORD, "w", align=CACHE_LINE)

    def halter():
        yield o.pv_wait(w.locked, 0)
        yield o.work(SLICE)

    guest = sim.add_guest("g0", mem, [halter(), kicker(SLICE // 6)])
    sim.run(3 * SLICE)
    return sim, guest, log


def test_a_halted_vcpu_kicked_is_ready_at_once_and_runs_at_once_with_the_boost():
    """``kvm_vcpu_kick()`` wakes the target in the hypercall, so ``kvm_sched_yield()`` finds it ready."""
    sim, guest, log = halted_target_run(kick_boost=True)
    _, guest_off, log_off = halted_target_run(kick_boost=False)
    assert [k[:4] for k in log.kicks] == [k[:4] for k in log_off.kicks] and len(log.kicks) == 1
    kick_t, _, _, state, _ = log.kicks[0]
    assert state == HALTED
    on, off = next_run(log, "g0/vcpu0", kick_t - 1), next_run(log_off, "g0/vcpu0", kick_t - 1)
    assert on == kick_t + sim.costs.vm_exit  # a busy pCPU: no idle exit to wait out
    assert off - kick_t > SLICE // 10  # without the boost: when CFS next picks, at the kicker's slice end
    assert guest.kick_yields == 1 and guest_off.kick_yields == 0


def alone_on_its_pcpu_run(kick_boost: bool):
    """Two pCPUs: vCPU0 and a hog share pCPU0, vCPU0 preempted there; the kicker has pCPU1 to itself."""
    log = Timeline()
    sim = Simulator(HostConfig(pcpus=2, scheduling=Scheduling(ple=False), kick_boost=kick_boost), seed=0, tracer=log)
    guest = sim.add_guest("g0", Memory(), [busy(4 * SLICE), kicker(SLICE + SLICE * 5 // 6)])
    sim.add_guest("hog", Memory(), [busy(4 * SLICE)])
    sim.run(3 * SLICE)
    return guest, log


def test_a_kicker_alone_on_its_pcpu_boosts_nobody():
    """``single_task_running()``: KVM does not even ask the target's run queue to prefer it."""
    guest, log = alone_on_its_pcpu_run(kick_boost=True)
    _, log_off = alone_on_its_pcpu_run(kick_boost=False)
    assert len(log.kicks) == 1 and log.kicks[0][3] == RUNNABLE
    assert guest.directed_yield_attempted == 1 and guest.kick_yields == 0
    assert log.switch_ins == log_off.switch_ins


def test_the_boost_is_on_by_default_on_kvm_only():
    assert HostConfig().boosts_kicks and HostConfig(hypervisor="kvm").boosts_kicks
    assert not HostConfig(hypervisor="baremetal").boosts_kicks
    assert not HostConfig(hypervisor="kvm-nopv").boosts_kicks
    assert not HostConfig(kick_boost=False).boosts_kicks


@pytest.mark.parametrize("host", ["baremetal", "kvm-nopv"])
def test_a_boost_asked_for_where_there_is_no_kick_hypercall_is_refused_in_one_line(host):
    with pytest.raises(BadInput) as err:
        scenario_from(None, {"host": {"hypervisor": host, "kick_boost": True}})
    message = str(err.value)
    assert "\n" not in message and "kick_boost" in message and host in message


def test_a_boosted_kick_is_one_vmcall_slice_until_the_kickers_vm_entry(tmp_path):
    """As ``perf kvm stat`` counts it: one exit, from the hypercall to the VM entry after the yield."""
    path = tmp_path / "trace.json"
    host = HostConfig(pcpus=1, scheduling=Scheduling(ple=False))
    tracer = Tracer(host.costs.freq_mhz)
    sim = Simulator(host, seed=0, tracer=tracer)
    guest = sim.add_guest("g0", Memory(), [busy(4 * SLICE), kicker(SLICE * 5 // 6)])
    with open(path, "w") as out:
        tracer.start(out)
        sim.run(3 * SLICE)
        tracer.finish(sim.now, sim)
    calls = [e for e in json.loads(path.read_text())["traceEvents"] if e["name"] == "VMCALL"]
    assert len(calls) == guest.exit_samples[EXIT_VMCALL] == 1
    assert calls[0]["args"]["yield_to"] == "g0/vcpu0" and calls[0]["flow_out"]
    assert calls[0]["dur"] == pytest.approx(guest.exit_cycles[EXIT_VMCALL] / host.costs.freq_mhz)
