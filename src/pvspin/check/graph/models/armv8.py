"""ARMv8 (AArch64), the axiomatic model of the Arm ARM (B2.3), as in ``cat/aarch64.cat`` of Dat3M (version 814a6fc).

Three axioms over the execution graph::

    internal: acyclic po-loc | ca | rf              (ca = fr | co)
    external: acyclic ob
    atomic:   empty rmw & (fre; coe)

with ``ob = obs | lob``, ``obs = rfe | fre | coe`` (other-multi-copy atomicity: a write is
seen by all other CPUs at once) and ``lob = lws | dob | aob | bob``::

    lws = po-loc; [W]                                  local write successor
    lrs = [W]; (po-loc \\ (po-loc; [W]; po-loc)); [R]   local read successor
    dob = addr | data | ctrl; [W] | (ctrl | addr; po); [ISB]; po; [R]
        | addr; po; [W] | (addr | data); lrs
    aob = rmw | [range(rmw)]; lrs; [A | Q]
    bob = po; [dmb.full]; po | po; ([A]; amo; [L]); po | [L]; po; [A]
        | [R]; po; [dmb.ld]; po | [A | Q]; po | [W]; po; [dmb.st]; po; [W] | po; [L]

(``si``, same instruction, is the identity without mixed-size accesses.)

**How the kernel's operations compile** -- Linux's arm64 with LSE atomics
(``arch/arm64/include/asm/barrier.h``, ``cmpxchg.h``, ``atomic_lse.h``):

======================================================  ================================
kernel operation                                        ARMv8
======================================================  ================================
``READ_ONCE``, ``atomic_read``                          ``LDR``
``smp_load_acquire``, ``atomic_read_acquire``           ``LDAR`` (A)
``WRITE_ONCE``, ``atomic_set``                          ``STR``
``smp_store_release``, ``atomic_set_release``           ``STLR`` (L)
``smp_store_mb``                                        ``STR; DMB ISH``
``xchg_relaxed`` / ``_acquire`` / ``_release`` / full   ``SWP`` / ``SWPA`` / ``SWPL`` / ``SWPAL``
``cmpxchg*``, ``try_cmpxchg*``                          ``CAS`` / ``CASA`` / ``CASL`` / ``CASAL``
``atomic_fetch_add*``, ``atomic_add``                   ``LDADD`` / ``LDADDA`` / ``LDADDL`` / ``LDADDAL``
``atomic_fetch_or*``                                    ``LDSET`` (same suffixes)
``atomic_fetch_andnot*``, ``atomic_andnot``             ``LDCLR`` (same suffixes)
``smp_mb``, ``smp_mb__before_atomic``, ``__after_atomic``  ``DMB ISH``
``smp_mb__after_spinlock``                              ``DMB ISH`` (``smp_mb__after_unlock_lock``: nothing)
``smp_rmb``                                             ``DMB ISHLD``
``smp_wmb``                                             ``DMB ISHST``
``smp_cond_load_relaxed``                               an ``LDR`` loop (``__cmpwait``: ``LDXR`` + ``WFE``)
``smp_cond_load_acquire``, ``atomic_cond_read_acquire``  ``LDR`` loop, then ``LDAR``: the read that
                                                        satisfies the condition is ``LDAR`` (A)
======================================================  ================================

An RMW is a read and a write joined by ``amo``; the ``A`` suffix tags the read, ``L``
the write, so a fully ordered atomic (``AL``) orders everything before it before
everything after it (``po; [A]; amo; [L]; po``).  A ``CAS`` that fails is its read
alone, acquire if the instruction is.  ``LDXR``/``STXR`` (AArch64 litmus tests only) are
a read and a write joined by ``rmw`` when the store succeeds.
"""

from __future__ import annotations

from ....machine import ops as o
from .. import relations as rel
from ..graph import ACQ, ACQ_PC, AMO, EXCL, REL, F, R, W
from . import armv8_direct, common

NAME = "armv8"

_READ_TAGS = {o.RELAXED: 0, o.ACQUIRE: ACQ, o.ACQUIRE_PC: ACQ_PC}
_RMW_TAGS = {o.RELAXED: (0, 0), o.NORETURN: (0, 0), o.ACQUIRE: (ACQ, 0), o.RELEASE: (0, REL), o.FULL: (ACQ, REL)}
_FENCES = {o.MB: "dmb.full", o.MB_BEFORE_ATOMIC: "dmb.full", o.MB_AFTER_ATOMIC: "dmb.full", o.RMB: "dmb.ld",
           o.WMB: "dmb.st", o.ISB: "isb", o.MB_AFTER_SPINLOCK: "dmb.full"}
_STORE_ORDERS = (o.RELAXED, o.RELEASE)


def compile(op: tuple):
    code = op[0]
    if code == o.LOAD:
        tags = _READ_TAGS.get(op[2])
        return None if tags is None else ((R, tags, None),)
    if code == o.COND_LOAD:
        tags = _READ_TAGS.get(op[3])
        return None if tags is None else ((R, tags, None),)
    if code == o.STORE:
        return ((W, REL if op[3] == o.RELEASE else 0, None),) if op[3] in _STORE_ORDERS else None
    if code in o.RMW_OPS:
        if code == o.XCHG and op[-1] == o.STORE_MB:
            return ((W, 0, None), (F, 0, "dmb.full"))
        if op[-1] not in _RMW_TAGS:
            return None
        read, write = _RMW_TAGS[op[-1]]
        return ((R, read | AMO, None), (W, write | AMO, None))
    if code == o.LOAD_EX and op[2] in (o.RELAXED, o.ACQUIRE):
        return ((R, (ACQ if op[2] == o.ACQUIRE else 0) | EXCL, None),)
    if code == o.STORE_EX and op[3] in _STORE_ORDERS:
        return ((W, (REL if op[3] == o.RELEASE else 0) | EXCL, None),)
    if code == o.FENCE:
        if op[1] == o.MB_AFTER_UNLOCK_LOCK:
            return ()  # smp_mb() on powerpc only; on arm64 nothing
        return ((F, 0, _FENCES[op[1]]),)
    return None


def lrs(x) -> list[int]:
    """``[W]; (po-loc \\ (po-loc; [W]; po-loc)); [R]``: a read and the write it could take from its own thread."""
    po_loc = x.po_loc
    through_write = rel.seq(rel.rng(po_loc, x.W), po_loc)
    return rel.restrict(x.W, rel.minus(po_loc, through_write), x.R)


def ob(x) -> list[int]:
    """Ordered-before, the relation the ``external`` axiom requires acyclic."""
    po, W_, R_ = x.po, x.W, x.R
    local_rs = lrs(x)
    obs = rel.union(x.external(x.rf), x.external(x.fr), x.external(x.co))
    lws = rel.rng(x.po_loc, W_)
    isb = x.fences("isb")
    addr, data, ctrl = x.addr, x.data, x.ctrl
    addr_po = rel.seq(addr, po)
    dob = rel.union(
        addr, data,
        rel.rng(ctrl, W_),
        rel.rng(rel.seq(rel.rng(rel.union(ctrl, addr_po), isb), po), R_),
        rel.rng(addr_po, W_),
        rel.seq(rel.union(addr, data), local_rs),
    )
    range_rmw = rel.range_of(x.rmw)
    aob = rel.union(x.rmw, rel.rng(rel.dom(range_rmw, local_rs), x.A | x.Q))
    full = x.fences("dmb.full")
    ld = x.fences("dmb.ld")
    st = x.fences("dmb.st")
    al = rel.restrict(x.A, x.amo, x.L)
    bob = rel.union(
        rel.seq(rel.rng(po, full), po),
        rel.seq(rel.seq(rel.rng(po, rel.domain(al)), al), po),
        rel.restrict(x.L, po, x.A),
        rel.seq(rel.restrict(R_, po, ld), po),
        rel.dom(x.A | x.Q, po),
        rel.restrict(W_, rel.seq(rel.rng(po, st), po), W_),
        rel.rng(po, x.L),
    )
    return rel.union(obs, lws, dob, aob, bob)


def _internal(x):
    return common.sc_per_location(x)


def _external(x):
    return common.cycle(ob(x))


AXIOMS = (("internal", _internal), ("atomic", common.atomicity), ("external", _external))
consistent = armv8_direct.consistent  # the same axioms, decided without building the relations

# for ``pvspin check`` and reports: what each fence kind is called on this architecture
FENCE_NAMES = {"dmb.full": "DMB ISH", "dmb.ld": "DMB ISHLD", "dmb.st": "DMB ISHST", "isb": "ISB"}

