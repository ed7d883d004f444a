"""The simulated hypervisor: halt and kick, time slices, lock-holder preemption, PLE, steal time."""

from pvspin.machine import ops as o
from pvspin.machine.memory import CACHE_LINE, Memory
from pvspin.sim.config import HostConfig, Scheduling
from pvspin.sim.engine import DONE, HALTED, T_HALT, T_SPIN, Simulator
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


def test_halted_vcpu_wakes_after_the_published_kick_latency():
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
    wake = sim.costs.ns(sim.costs.kick_wake_ns)
    assert wake <= v0.acct[T_HALT] <= 100_000 + wake + 10_000
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


def preempted_holder_run(ple: bool):
    """vCPU0 takes the lock and is preempted holding it; vCPU1 then wants the lock."""
    mem = Memory()
    w = mem.alloc(WORD, "lock0", align=CACHE_LINE)

    def holder():
        yield from tas_lock(w)
        yield o.cs_enter(0)
        yield o.work(30_000_000, o.WORK_CS)  # 12 ms: longer than a time slice
        yield o.cs_exit(0)
        yield from tas_unlock(w)

    def waiter():
        yield o.work(1_000)
        yield from tas_lock(w)
        yield o.cs_enter(0)
        yield o.cs_exit(0)
        yield from tas_unlock(w)

    sim = Simulator(host(1, ple=ple), seed=0)
    guest = sim.add_guest("g0", mem, [holder(), waiter()])
    sim.run(10**9)
    assert guest.mutex_failures == 0
    assert all(v.state == DONE for v in sim.vcpus)
    return sim, guest


def test_preempted_lock_holder_makes_the_waiter_burn_its_slice():
    sim, guest = preempted_holder_run(ple=False)
    waiter = sim.vcpus[1]
    assert guest.lock_holder_preemptions >= 1
    # with one pCPU the waiter can only spin while the holder is preempted: a whole slice
    assert waiter.acct[T_SPIN] >= sim.min_granularity


def test_pause_loop_exiting_hands_the_pcpu_back_to_the_preempted_holder():
    sim_ple, _ = preempted_holder_run(ple=True)
    sim_no, _ = preempted_holder_run(ple=False)
    waiter = sim_ple.vcpus[1]
    assert waiter.exits >= 1
    assert waiter.acct[T_SPIN] < sim_ple.ple_window * 4
    assert waiter.acct[T_SPIN] * 100 < sim_no.vcpus[1].acct[T_SPIN]


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
