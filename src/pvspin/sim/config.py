"""Configuration of the simulated host: costs, hypervisor policy, interrupts.

Every default names its source.  Figures from ``shared/reference/published-figures.md``
are cited by the commit that published them; the rest are stated assumptions about a
2015-era Intel server (Haswell-EX, the machine the PV spinlock figures were measured on),
and every one is a knob.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .model import Model

Hypervisor = Literal["baremetal", "kvm", "kvm-nopv"]


class Costs(Model):
    """Cycle costs charged by the timed simulator (integer cycles at ``freq_mhz``)."""

    freq_mhz: int = Field(2500, gt=0, description="core clock; 2.4–2.9 GHz Westmere/Haswell in the published figures")

    # cache hierarchy (assumptions, Haswell-class; cf. Agner Fog's tables and Intel's optimization manual)
    l1_hit: int = Field(4, ge=0, description="load hitting a line this core holds")
    store_hit: int = Field(1, ge=0, description="store to a line held exclusive (retires into the store buffer)")
    locked_rmw: int = Field(
        20, ge=0, description="extra cost of a LOCK-prefixed RMW over a plain access (~18–20 cycles)"
    )
    remote_transfer: int = Field(120, ge=0, description="cache-to-cache transfer of a line within a socket (~50 ns)")
    cross_socket_transfer: int = Field(
        300, ge=0, description="cache-to-cache transfer between sockets over QPI (~120 ns, assumption for Haswell-EX)"
    )
    memory_fetch: int = Field(200, ge=0, description="line fetched from DRAM (~80 ns)")
    transfer_jitter: int = Field(
        24, ge=0, description="each transfer takes 0..N extra cycles (seeded): distance and contention vary"
    )
    line_occupancy: int = Field(
        120, ge=0, description="cycles one transfer keeps its line busy: transfers of a line serialize"
    )
    mfence: int = Field(33, ge=0, description="smp_mb() as MFENCE / locked add to the stack")
    pause: int = Field(10, ge=0, description="cpu_relax(): PAUSE latency before Skylake (~10 cycles)")

    # hypervisor (published figures where they exist)
    vm_exit: int = Field(1200, ge=0, description="VM exit + entry round trip (assumption: ~0.5 µs on Haswell VMX)")
    context_switch: int = Field(
        5000, ge=0, description="host switch between two vCPU threads on one pCPU (~2 µs, assumption)"
    )
    kick_hypercall_ns: int = Field(
        7400, ge=0, description="PV kick hypercall, issuer side: 7.4 µs (Haswell-EX), commit 45e898b73562"
    )
    kick_wake_ns: int = Field(
        63600,
        ge=0,
        description="kick until the halted vCPU runs again, unloaded host: 63.6 µs (Haswell-EX), commit 45e898b73562; "
        "the kicked vCPU is runnable at once, and a wake-up on an idle pCPU runs this less the hypercall later",
    )
    steal_time_read: int = Field(4, ge=0, description="vcpu_is_preempted(): one load of the steal-time preempted byte")

    def ns(self, ns: int) -> int:
        """Nanoseconds to cycles at this clock."""
        return ns * self.freq_mhz // 1000

    def us(self, us: float) -> int:
        return int(us * self.freq_mhz)


class Scheduling(Model):
    """The host scheduler: CFS-like, one run queue per pCPU, as Linux runs vCPU threads.

    Defaults are Linux CFS's with its logarithmic CPU scaling at 8+ CPUs
    (``sysctl_sched_latency`` 6 ms × 4, ``min_granularity`` 0.75 ms × 4,
    ``wakeup_granularity`` 1 ms × 4).  A vCPU that spins keeps its pCPU until its slice
    ends: that is the problem paravirt spinlocks exist to solve.  vCPUs stay on their
    pCPU's queue; an idle pCPU pulls a waiting one, and at each slice end a queue two or
    more shorter than the longest pulls one (load balancing).
    """

    sched_latency_us: int = Field(24000, gt=0)
    min_granularity_us: int = Field(3000, gt=0)
    wakeup_granularity_us: int = Field(4000, ge=0)
    ple: bool = Field(True, description="pause-loop exiting: a vCPU spinning past its window exits and yields")
    ple_window: int = Field(4096, gt=0, description="KVM's default ple_window, cycles of PAUSE-looping before an exit")
    ple_window_grow: int = Field(
        2, ge=1, description="KVM's ple_window_grow: each PLE exit multiplies the vCPU's window"
    )
    ple_window_max: int = Field(2**32 - 1, gt=0, description="KVM's ple_window_max (VMX default UINT_MAX)")


class Interrupts(Model):
    """Guest interrupts: each vCPU is interrupted at ``rate_hz`` (Poisson), handlers at ``level``."""

    rate_hz: float = Field(0.0, ge=0, le=1e6, description="at most one per microsecond: more is all interrupt")
    level: Literal["softirq", "hardirq", "nmi"] = "hardirq"


class HostConfig(Model):
    pcpus: int = Field(4, gt=0, le=4096, description="physical CPUs")
    sockets: int = Field(
        2,
        gt=0,
        description="sockets the pCPUs are spread over, in order (the published lock figures are 2-4 socket servers)",
    )
    hypervisor: Hypervisor = "kvm"
    costs: Costs = Costs()
    scheduling: Scheduling = Scheduling()
    spurious_wakeup_hz: float = Field(0.0, ge=0, le=1e6, description="rate at which a halted vCPU wakes without a kick")
    kick_boost: bool | None = Field(
        None,
        description="KVM's kick boost (commit 266e85a5ec91, 2019): after KVM_HC_KICK_CPU the kicker yields "
                    "to the vCPU it kicked if that one is runnable (kvm_sched_yield); default: on for kvm, which "
                    "has the kick hypercall, off elsewhere")  # fmt: skip

    halt_poll_ns: int | None = Field(
        None,
        ge=0,
        le=1_000_000_000,
        description="KVM's halt_poll_ns: the longest a halted vCPU busy-waits on its pCPU for a wake-up (only while "
                    "it is the pCPU's one task) before it blocks; per vCPU the poll starts at 0, grows to 10 us and "
                    "doubles after each halt shorter than this, and a longer one resets it (halt_poll_ns_grow_start, "
                    "_grow, _shrink = 0); default: 200000 (KVM_HALT_POLL_NS_DEFAULT, x86) on a KVM host, 0 turns it off")  # fmt: skip

    @model_validator(mode="after")
    def _kick_boost_needs_the_kick_hypercall(self) -> HostConfig:
        if self.kick_boost and self.hypervisor != "kvm":
            raise ValueError(f"kick_boost: the {self.hypervisor} host has no kick hypercall (KVM_HC_KICK_CPU) to boost from")
        if self.halt_poll_ns and self.hypervisor == "baremetal":
            raise ValueError("halt_poll_ns: bare metal has no hypervisor to poll in (a halt there is the CPU's own)")
        return self

    @property
    def halt_poll_max_ns(self) -> int:
        """KVM's ``kvm->max_halt_poll_ns``: ``halt_poll_ns``, or by default 200 µs on a KVM host."""
        if self.halt_poll_ns is not None:
            return self.halt_poll_ns
        return 0 if self.hypervisor == "baremetal" else 200_000

    @property
    def boosts_kicks(self) -> bool:
        """Whether the host yields to a kicked vCPU: ``kick_boost``, or by default on a KVM host."""
        return self.hypervisor == "kvm" if self.kick_boost is None else self.kick_boost
