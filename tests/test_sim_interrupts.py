"""Guest interrupts: handlers run nested on the vCPU and the interrupted work resumes."""

from pvspin.machine import ops as o
from pvspin.machine.memory import CACHE_LINE, Memory
from pvspin.sim.config import HostConfig, Scheduling
from pvspin.sim.engine import Simulator
from pvspin.sim.vcpu import DONE
from simple_locks import WORD, locker, tas_lock, tas_unlock


def test_handlers_take_their_own_lock_nested_inside_task_critical_sections():
    mem = Memory()
    task_lock = mem.alloc(WORD, "task_lock", align=CACHE_LINE)
    irq_lock = mem.alloc(WORD, "irq_lock", align=CACHE_LINE)
    levels = []

    def handler(cpu):
        levels.append((yield o.in_nmi()))
        yield from tas_lock(irq_lock)
        yield o.cs_enter(1)
        yield o.work(100, o.WORK_CS)
        yield o.cs_exit(1)
        yield from tas_unlock(irq_lock)

    programs = [locker(task_lock, 0, tas_lock, tas_unlock, hold=2_000, delay=500, rounds=300) for _ in range(3)]
    sim = Simulator(HostConfig(pcpus=3, scheduling=Scheduling(ple=False)), seed=4)
    guest = sim.add_guest("g0", mem, programs, irq_handler=handler, irq_rate_hz=200_000.0)
    sim.run(10**9)
    assert all(v.state == DONE for v in guest.vcpus)
    assert guest.mutex_failures == 0
    assert sum(v.cs_entries for v in guest.vcpus) == 900 + len(levels)
    assert len(levels) > 50 and not any(levels)
    assert mem.read(task_lock.val.addr, 4) == 0 and mem.read(irq_lock.val.addr, 4) == 0


def test_interrupts_wait_while_the_task_has_them_disabled():
    mem = Memory()
    w = mem.alloc(WORD, "w", align=CACHE_LINE)
    trace = []

    def handler(cpu):
        trace.append("irq")
        yield o.work(10)

    def task():
        yield o.local_irq_disable()
        yield o.work(1_000_000)
        trace.append("enable")
        yield o.local_irq_enable()
        yield o.WRITE_ONCE(w.val, 1)
        yield o.work(1_000)

    sim = Simulator(HostConfig(pcpus=1), seed=0)
    sim.add_guest("g0", mem, [task()], irq_handler=handler, irq_rate_hz=1e7)
    sim.run(10**7)
    assert trace[0] == "enable"
    assert trace.count("irq") >= 1
    assert sim.vcpus[0].state == DONE
