"""The simulated hypervisor: halt and kick, time slices, lock-holder preemption, PLE, steal time."""

from pvspin.machine import ops as o
from pvspin.machine.memory import CACHE_LINE, Memory
from pvspin.sim.config import HostConfig, Scheduling
from pvspin.sim.engine import Simulator
from pvspin.sim.trace import NullTracer
from pvspin.sim.vcpu import DONE, HALTED, T_HALT, T_HOST, T_PREEMPT, T_SPIN
from simple_locks import WORD, tas_lock, tas_unlock


def host(pcpus, ple=False, **kw):
    return HostConfig(pcpus=pcpus, scheduling=Scheduling(ple=ple), **kw)


def test_kick_sent_before_the_halt_is_latched_not_lost():
    mem = Memory()
    w = mem.alloc(WORD, "w", align=CACHE_LINE)

    def sleeper():
        yield o.work(200_000)  # the kick arrives while we are still busy
        yield o.pv_wait(w.locked, 0)  # *ptr == val: this would halt for good without the latch
        yield o.WRITE_ONCE(w.tail, 1)

    def kicker():
        yield o.pv_kick(0)

    sim = Simulator(host(2), seed=0)
    sim.add_guest("g0", mem, [sleeper(), kicker()])
    sim.run(10**8)
    v0 = sim.vcpus[0]
    assert v0.state == DONE and v0.halts == 0
    assert mem.read(w.tail.addr, 2) == 1


def test_a_kicked_vcpu_on_an_idle_pcpu_runs_the_published_kick_to_run_time_after_the_kick():
    """Runnable when the kick hypercall returns (``kvm_vcpu_kick``), running once its idle pCPU is out of idle."""
    mem = Memory()
    w = mem.alloc(WORD, "w", align=CACHE_LINE)

    def sleeper():
        yield o.pv_wait(w.locked, 0)

    def kicker():
        yield o.work(100_000)
        yield o.pv_kick(0)

    sim = Simulator(host(2), seed=0)
    guest = sim.add_guest("g0", mem, [sleeper(), kicker()])
    sim.run(10**8)
    v0 = sim.vcpus[0]
    assert v0.state == DONE and v0.halts == 1
    kick = sim.costs.ns(sim.costs.kick_hypercall_ns)
    assert 100_000 + kick - 1_000 <= v0.acct[T_HALT] <= 100_000 + kick  # halted until the kick returns
    assert v0.acct[T_PREEMPT] == sim.costs.ns(sim.costs.kick_wake_ns) - kick  # then its pCPU leaves idle
    # the qstat counters the kernel keeps around pv_kick()/pv_wait(), in ns
    events = guest.lock_events
    assert events["pv_latency_kick"] == sim.costs.kick_hypercall_ns
    assert events["pv_kick_wake"] == 1
    assert sim.costs.kick_wake_ns <= events["pv_latency_wake"] <= sim.costs.kick_wake_ns + 5_000


def test_halt_returns_at_once_when_the_value_differs():
    mem = Memory()
    w = mem.alloc(WORD, "w", align=CACHE_LINE)
    mem.write(w.locked.addr, 1, 3)

    def prog():
        yield o.pv_wait(w.locked, 1)

    sim = Simulator(host(1), seed=0)
    sim.add_guest("g0", mem, [prog()])
    sim.run(10**7)
    assert sim.vcpus[0].state == DONE and sim.vcpus[0].halts == 0


SLICE = 30_000_000  # one pCPU, two vCPUs: CFS's slice is half the 24 ms latency, 12 ms


def preempted_holder_run(ple: bool, waiter_first: int = 0):
    """One pCPU: the holder takes the lock and is preempted holding it; the waiter then wants it.

    Returns the simulator, the guest and the waiter's vCPU.  With ``waiter_first`` cycles of
    work the waiter is vCPU0 and runs first (equal vruntime, lower id); with more than a
    slice of it, both have had a slice when it starts spinning.  Without, the holder runs first.
    """
    mem = Memory()
    w = mem.alloc(WORD, "lock0", align=CACHE_LINE)

    def holder():
        yield from tas_lock(w)
        yield o.cs_enter(0)
        yield o.work(SLICE + SLICE // 2, o.WORK_CS)  # longer than a time slice
        yield o.cs_exit(0)
        yield from tas_unlock(w)

    def waiter():
        yield o.work(waiter_first or 1_000)
        yield from tas_lock(w)
        yield o.cs_enter(0)
        yield o.cs_exit(0)
        yield from tas_unlock(w)

    sim = Simulator(host(1, ple=ple), seed=0)
    guest = sim.add_guest("g0", mem, [waiter(), holder()] if waiter_first else [holder(), waiter()])
    sim.run(10**9)
    assert guest.mutex_failures == 0
    assert all(v.state == DONE for v in sim.vcpus)
    return sim, guest, sim.vcpus[0 if waiter_first else 1]


def test_preempted_lock_holder_makes_the_waiter_burn_its_slice():
    sim, guest, waiter = preempted_holder_run(ple=False)
    assert guest.lock_holder_preemptions >= 1
    # with one pCPU the waiter can only spin while the holder is preempted: a whole slice
    assert waiter.acct[T_SPIN] >= sim.sched.min_granularity


def test_pause_loop_exiting_hands_the_pcpu_back_to_the_preempted_holder():
    """Both vCPUs had a slice: the holder is not ahead, so CFS honours the directed yield."""
    sim_ple, _, waiter = preempted_holder_run(ple=True, waiter_first=SLICE + SLICE // 3)
    _, _, waiter_no_ple = preempted_holder_run(ple=False, waiter_first=SLICE + SLICE // 3)
    assert waiter.exits >= 1
    assert waiter.acct[T_SPIN] < sim_ple.hv.ple_window * 4
    assert waiter.acct[T_SPIN] * 100 < waiter_no_ple.acct[T_SPIN]


def test_cfs_refuses_a_yield_to_a_holder_that_had_its_share():
    """The holder ran a whole slice, the waiter none: pick_next_entity() ignores the buddy
    until the waiter's vruntime is within a wake-up granularity of the holder's."""
    sim, _, waiter = preempted_holder_run(ple=True)
    assert waiter.ple_exits >= 5
    assert waiter.acct[T_SPIN] >= SLICE - sim.sched.wakeup_granularity


def test_vcpu_is_preempted_reports_steal_time_state():
    """One pCPU: vCPU0 runs first and is preempted at its slice end; vCPU1 then asks."""
    answers = []

    def busy():
        yield o.work(100_000_000)

    def asker():
        answers.append((yield o.vcpu_is_preempted(0)))  # descheduled while running: preempted
        answers.append((yield o.vcpu_is_preempted(2)))  # runnable, never ran: not flagged
        answers.append((yield o.vcpu_is_preempted(1)))  # itself, running

    sim = Simulator(host(1), seed=0)
    sim.add_guest("g0", Memory(), [busy(), asker(), busy()])
    sim.run(10**9)
    assert answers == [True, False, False]


def halting_program(mem):
    w = mem.alloc(WORD, "w", align=CACHE_LINE)

    def prog():
        yield o.pv_wait(w.locked, 0)  # nobody will ever kick

    return prog()


def test_spurious_wakeups_end_a_halt_without_a_kick():
    mem = Memory()
    sim = Simulator(host(1, spurious_wakeup_hz=10_000.0), seed=1)
    sim.add_guest("g0", mem, [halting_program(mem)])
    sim.run(10**8)
    assert sim.vcpus[0].state == DONE and sim.vcpus[0].halts == 1

    mem = Memory()
    quiet = Simulator(host(1), seed=1)
    quiet.add_guest("g0", mem, [halting_program(mem)])
    quiet.run(10**8)
    assert quiet.vcpus[0].state == HALTED


def test_ple_window_grows_when_there_is_nobody_to_yield_to():
    """KVM's grow_ple_window(): a spinner on a dedicated pCPU stops exiting after a few doublings."""
    mem = Memory()
    w = mem.alloc(WORD, "lock0", align=CACHE_LINE)

    def holder():
        yield from tas_lock(w)
        yield o.work(25_000_000)  # 10 ms
        yield from tas_unlock(w)

    def waiter():
        yield o.work(1_000)
        yield from tas_lock(w)
        yield from tas_unlock(w)

    sim = Simulator(host(2, ple=True), seed=0)
    sim.add_guest("g0", mem, [holder(), waiter()])
    sim.run(10**9)
    waiter_vcpu = sim.vcpus[1]
    assert waiter_vcpu.state == DONE
    assert 5 <= waiter_vcpu.ple_exits <= 20  # log2(25M / 4096) ~ 13 doublings, not ~5,000 exits


class PlacementLog(NullTracer):
    """A tracer that records which vCPU each pCPU switched to, and when."""

    def __init__(self):
        self.switches = []

    def pcpu(self, t, pcpu, vcpu):
        if vcpu is not None:
            self.switches.append((t, pcpu, str(vcpu)))

    def vcpu_state(self, t, vcpu, state):
        pass

    def spin(self, t, vcpu, on):
        pass

    def instant(self, t, vcpu, name, args=None):
        pass


def busy(cycles):
    yield o.work(cycles)


def test_vcpus_stay_on_their_pcpu_run_queue():
    """Per-pCPU run queues: 4 busy vCPUs on 2 pCPUs time-share in place, none migrates."""
    log = PlacementLog()
    sim = Simulator(host(2), seed=0, tracer=log)
    sim.add_guest("g0", Memory(), [busy(10 * SLICE) for _ in range(4)])
    sim.run(20 * SLICE)
    homes = {}
    for _, pcpu, vcpu in log.switches:
        homes.setdefault(vcpu, set()).add(pcpu)
    assert homes == {"g0/vcpu0": {0}, "g0/vcpu1": {1}, "g0/vcpu2": {0}, "g0/vcpu3": {1}}
    assert len(log.switches) >= 8  # they did take turns


def test_a_pcpu_that_goes_idle_pulls_a_waiting_vcpu():
    """newidle balance: pCPU1's only vCPU finishes; it takes the one waiting on pCPU0 at once."""
    log = PlacementLog()
    sim = Simulator(host(2), seed=0, tracer=log)
    sim.add_guest("g0", Memory(), [busy(10 * SLICE), busy(1_000), busy(1_000)])
    sim.run(20 * SLICE)
    assert all(v.state == DONE for v in sim.vcpus)
    pulled = [(t, pcpu) for t, pcpu, vcpu in log.switches if vcpu == "g0/vcpu2"]
    assert pulled and pulled[0][1] == 1 and pulled[0][0] < 100_000


def test_a_directed_yield_preempts_the_targets_pcpu():
    """kvm_vcpu_on_spin() boosts a preempted sibling on its own pCPU, preempting what runs there.

    pCPU0 runs the holder, preempted holding the lock at its slice end, then another guest's
    hog; the spinner, alone on pCPU1, wants the lock once the hog has run most of a slice
    (so CFS finds the holder within a wake-up granularity and honours the boost).
    """
    mem = Memory()
    w = mem.alloc(WORD, "lock0", align=CACHE_LINE)

    def holder():
        yield from tas_lock(w)
        yield o.cs_enter(0)
        yield o.work(SLICE + 10_000, o.WORK_CS)
        yield o.cs_exit(0)
        yield from tas_unlock(w)

    def spinner():
        yield o.work(SLICE + SLICE * 7 // 10)
        yield from tas_lock(w)
        yield from tas_unlock(w)

    sim = Simulator(host(2, ple=True), seed=0)
    guest = sim.add_guest("g0", mem, [holder(), spinner()])
    sim.add_guest("hog", Memory(), [busy(10 * SLICE)])
    sim.run(10 * SLICE)
    holder_vcpu, spinner_vcpu, _ = sim.vcpus
    assert spinner_vcpu.state == DONE and holder_vcpu.state == DONE
    assert guest.lock_holder_preemptions >= 1
    # the holder came back on pCPU0 long before the hog's slice there ended (~9 ms later)
    assert spinner_vcpu.acct[T_SPIN] < SLICE // 30


def test_bare_metal_runs_each_cpu_on_its_own_pcpu():
    """Bare metal is the pinned policy: CPU k on pCPU k, no queueing, no switches; a halted CPU's
    pCPU idles until it wakes there again."""
    mem = Memory()
    w = mem.alloc(WORD, "w", align=CACHE_LINE)

    def sleeper():
        yield o.pv_wait(w.locked, 0)
        yield o.work(10_000)

    def kicker():
        yield o.work(100_000)
        yield o.pv_kick(0)

    sim = Simulator(HostConfig(pcpus=4, hypervisor="baremetal"), seed=0)
    sim.add_guest("g0", mem, [sleeper(), kicker(), busy(50_000)])
    sim.run(10**8)
    assert [v.home for v in sim.vcpus] == [0, 1, 2]
    assert all(v.state == DONE for v in sim.vcpus) and sim.vcpus[0].halts == 1
    assert all(v.acct[T_HOST] == 0 and v.acct[T_PREEMPT] == 0 for v in sim.vcpus)
    assert sim.pcpus[3].busy == 0 and sim.pcpus[3].last_vcpu is None
