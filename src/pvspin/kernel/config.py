"""Build-time knobs of the guest kernel's spinlocks, and the catalogue of injectable bugs.

The defaults are the x86-64 kernel's values: ``_Q_PENDING_LOOPS`` (``1 << 9``,
arch/x86/include/asm/qspinlock.h), ``SPIN_THRESHOLD`` (``1 << 15``,
arch/x86/include/asm/spinlock.h), ``PV_PREV_CHECK_MASK`` (``0xff``) and ``MAX_NODES`` (4,
since 4.20).  Small models shrink them so that the bounded paths and PV halting happen in
a few steps.
"""

from __future__ import annotations

from dataclasses import dataclass

# name -> (what the injected code does wrong, upstream commit that fixed it or None).
# Each is one `if "<name>" in self.config.bugs:` at the place the kernel changed.
BUGS: dict[str, tuple[str, str | None]] = {
    "pv-kick-node-no-barrier": (
        "pv_kick_node() drops smp_mb__before_atomic() and pv_wait_node() sets vcpu_halted with a plain "
        "WRITE_ONCE instead of smp_store_mb(): store buffering loses the wake-up under TSO",
        "34d54f3d6917",
    ),
    "pending-after-tail": (
        "native slowpath carries on as pending owner when queued_fetch_set_pending_acquire() saw a tail "
        "(instead of undoing its own pending bit and queueing): two owners or a hung queue head",
        "59fb586b4a07",
    ),
    "unhash-without-slow-check": (
        "__pv_queued_spin_unlock_slowpath() unhashes without checking for _Q_SLOW_VAL: unlocking an "
        "unheld lock hits BUG() in pv_unhash() instead of a WARN",
        None,
    ),
    "count-after-init": (
        "the per-CPU node count is incremented after the node is initialised: an interrupt in between "
        "reuses the same qnode",
        "11dc13224c97",
    ),
    "no-max-nodes-fallback": (
        "no idx >= MAX_NODES fallback: a fifth nesting level overflows the tail's idx field and uses a "
        "node outside its CPU's qnodes",
        "d682b596d993",
    ),
    "unbounded-pending-wait": (
        "the native slowpath waits for the (0,1,0) pending->locked hand-over without bound, as 4.2 did",
        "6512276d97b1",
    ),
    "xchg-tail-release": (
        "xchg_tail() is xchg_release() with no smp_wmb() before it, and prev->next is linked with WRITE_ONCE() "
        "(v4.5, 64d816cba06c): on arm64 the node's initialisation may become visible after the link, and the "
        "late node->locked = 0 overwrites the predecessor's hand-over",
        "95bcade33a8a",
    ),
}

# The four ordering changes with which Dartagnan verified qspinlock under the LKMM of 2021
# (huawei-drc/cna-verification, lkmm-fixes.patch): to the whole-word build, see qspinlock_lkmm.py.
_CNA = "huawei-drc/cna-verification's lkmm-fixes.patch"
LKMM_CHANGES: dict[str, tuple[str, str]] = {
    "lkmm-xchg-tail-release": ("xchg_tail()'s cmpxchg loop is _release", _CNA),
    "lkmm-set-locked-release": ("clear_pending_set_locked() is atomic_fetch_add_release()", _CNA),
    "lkmm-pending-release-mb": ("the pending atomic_fetch_or_acquire() is atomic_fetch_or_release(), then smp_mb()",
                                _CNA),
    "lkmm-clear-pending-release": ("clear_pending() is atomic_fetch_andnot_release()", _CNA),
}
# One more, found here: at 2 CPUs x 2 the whole-word lock loses an update under every LKMM version,
# with or without the four (docs/lkmm-qspinlock-16k.md); an acquire xchg_tail() cures it.
LKMM_ORDERINGS: dict[str, tuple[str, str]] = {
    **LKMM_CHANGES,
    "lkmm-xchg-tail-acquire": ("xchg_tail()'s cmpxchg loop is _acquire (fully ordered with lkmm-xchg-tail-release)",
                               "pvspin's finding, docs/lkmm-qspinlock-16k.md"),
}

# Fixes that are not today's code, to give with --bug: name -> (what, where it comes from).
FIXES: dict[str, tuple[str, str]] = {
    "link-release": (
        "prev->next is linked with smp_store_release(): with xchg-tail-release, the first fix of 64d816cba06c",
        "95bcade33a8a",
    ),
    **LKMM_ORDERINGS,
}


ARCHES = ("x86", "arm64")
# The knobs: the constants a small model shrinks (``--knob NAME=VALUE``); a lock declares those it reads.
KNOBS = ("pending_loops", "spin_threshold", "pv_prev_check_mask", "max_nodes")


def _power_of_two_minus_one(mask: int) -> bool:
    return mask >= 0 and (mask + 1) & mask == 0


@dataclass(frozen=True)
class LockConfig:
    """Configuration of one guest kernel's lock code (the kernel's compile-time constants)."""

    nr_cpus_16k: bool = False  # True: NR_CPUS >= 16K layout (1-bit pending, cmpxchg loops)
    pending_loops: int = 1 << 9  # _Q_PENDING_LOOPS, x86 value
    spin_threshold: int = 1 << 15  # SPIN_THRESHOLD
    pv_prev_check_mask: int = 0xFF  # PV_PREV_CHECK_MASK
    max_nodes: int = 4  # MAX_NODES (4 since 4.20)
    bugs: frozenset[str] = frozenset()  # injected bugs by name (model checker's bug corpus)
    arch: str = "x86"  # x86 or arm64: where the kernel's code differs by architecture (see qspinlock.py)

    def __post_init__(self) -> None:
        for knob in ("pending_loops", "spin_threshold"):
            value = getattr(self, knob)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{knob} must be a positive integer, got {value!r}")
        if not isinstance(self.pv_prev_check_mask, int) or not _power_of_two_minus_one(self.pv_prev_check_mask):
            raise ValueError(f"pv_prev_check_mask must be 2**k - 1, got {self.pv_prev_check_mask!r}")
        # The tail's idx field is 2 bits wide: more than 4 nodes cannot be encoded.
        if not isinstance(self.max_nodes, int) or not 1 <= self.max_nodes <= 4:
            raise ValueError(f"max_nodes must be 1..4, got {self.max_nodes!r}")
        if self.arch not in ARCHES:
            raise ValueError(f"arch must be one of {', '.join(ARCHES)}, got {self.arch!r}")
        unknown = sorted(set(self.bugs) - BUGS.keys() - FIXES.keys())
        if unknown:
            raise ValueError(f"unknown bug {unknown[0]!r} (known: {', '.join(sorted(BUGS))})")
        object.__setattr__(self, "bugs", frozenset(self.bugs))


DEFAULT_CONFIG = LockConfig()
