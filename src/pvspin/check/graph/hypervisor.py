"""The hypervisor interface as memory events, for the execution-graph checker.

The interleaving checker keeps halted vCPUs and latched kicks as state of its world; a
graph has only events, so the hypervisor's part becomes accesses to one location per
vCPU, ``pv_unhalted[cpu]`` (KVM's ``vcpu->arch.pv.pv_unhalted``), made by the vCPUs'
own threads:

* ``pv_kick(cpu)`` -- the ``KVM_HC_KICK_CPU`` hypercall: the VM exit orders everything
  before it (``smp_mb()``), the host sets ``pv_unhalted[cpu] = 1``, the VM entry orders it
  before everything after (``smp_mb()``);
* ``pv_wait(ptr, val)`` -- ``kvm_wait()``: a plain read of ``*ptr``; if it differs from
  ``val``, return; else ``HLT``: consume a latched kick (``xchg(pv_unhalted[cpu], 0)``,
  fully ordered: the exit and entry) and return, or stay halted until a kick comes (a
  spin-wait on ``pv_unhalted[cpu]``, then consume it).  A kick sent before the halt is
  therefore not lost, and two kicks before one wake-up wake it once, as in KVM.

Why full barriers.  On x86 a VM exit is serializing: everything the guest did is
globally visible before the host runs.  On arm64 taking an exception (``HVC``, a trapped
``WFI``) is only a context synchronization event, which orders no memory accesses; the
order comes from the host code that then runs *on the same CPU*: the kick path
(``kvm_vcpu_kick()`` -> ``rcuwait_wake_up()``) and the blocking path
(``kvm_vcpu_block()`` -> ``set_current_state()``) each execute ``smp_mb()``, a
``DMB ISH`` in program order after the guest's accesses and before the host's.  So the
model is the same on both, with the barrier standing for the host's.  (Mainline arm64
has no PV spinlocks; this is the generic PV code run under ARMv8, as the LKMM would.)
No spurious wake-ups.  ``vcpu_is_preempted()`` stays an operation: the explorer answers
it both ways.
"""

from __future__ import annotations

from ...machine import ops as o
from ...machine.crash import operation_problem
from ...machine.deps import deps_of
from ...machine.memory import Layout, Memory, Ref

PV_UNHALTED = Layout("pv_unhalted", 4, [("flag", 0, 4)])


def _kicked(v: int) -> bool:
    return v != 0


def latches(mem: Memory, ncpus: int) -> list[Ref]:
    """One ``pv_unhalted`` flag per vCPU, allocated in the guest's memory (the host's, really)."""
    return [mem.alloc(PV_UNHALTED, f"pv_unhalted[{cpu}]").flag for cpu in range(ncpus)]


def run_hypercalls(gen, cpu: int, flags: list[Ref]):
    """The guest code ``gen`` with its ``pv_wait`` / ``pv_kick`` done as the accesses described above."""
    result = None
    first = True
    while True:
        try:
            op = gen.send(None) if first else gen.send(result)
        except StopIteration as stop:
            return stop.value
        first = False
        # a malformed operation goes through as it is: the explorer reports it (pvspin.machine.crash)
        code = op[0] if type(op) is tuple and op else None
        if (code == o.PV_KICK or code == o.PV_WAIT) and operation_problem(op) is not None:
            code = None
        if code == o.PV_KICK:
            target = op[1]
            if not 0 <= int(target) < len(flags):
                raise o.GuestBug(f"pv_kick({int(target)}): no such vCPU")
            yield o.smp_mb()
            yield o.WRITE_ONCE(flags[int(target)].depending(deps_of(target)), 1)
            yield o.smp_mb()
            result = None
        elif code == o.PV_WAIT:
            if (yield o.READ_ONCE(op[1])) == op[2]:
                mine = flags[cpu]
                while not (yield o.xchg(mine, 0)):
                    yield o.smp_cond_load_relaxed(mine, _kicked)
            result = None
        else:
            result = yield op
