"""The Linux-kernel memory model (LKMM) as a consistency predicate, in three versions.

Mirrored, relation by relation and with the cat files' names, from:

* ``v00`` -- the model up to Linux v6.2: ``cat/lkmm/lkmm-v00.cat`` and ``lkmm-v00.bell`` of
  hernanponcedeleon/Dat3M (commits 5854df8, 3bda50b), which are the kernel's
  ``tools/memory-model/linux-kernel.cat`` / ``.bell`` / ``lock.cat`` of that time with the
  bell's ``Marked``/``Plain`` moved into the cat file;
* ``v01`` -- ``v00`` plus Alan Stern's "rmw-sequences" patch (LKML 2022/11/16, merged for
  v6.3): ``cat/lkmm/lkmm-v01.cat`` of Dat3M (commit 222db16);
* ``current`` -- the newest kernel's ``tools/memory-model/linux-kernel.cat`` and
  ``linux-kernel.bell`` (v6.18): ``v01`` plus "Make ppo a subrelation of po" (``fence & int``
  in ``ppo``), ``to-r = (addr ; [R]) | ...``, dependencies carried through the thread's own
  writes (the bell's ``carry-dep = (data ; rfi)*``), and Jonas Oberhauser's softcoded tags
  (2024): a fully ordered RMW's read and write carry ``Mb`` instead of herd inserting
  ``smp_mb()`` fences around it, with ``mb`` gaining ``[M] ; po ; [Mb & R]`` and
  ``[Mb & W] ; po ; [M]``, and the bell removing impossible tags (``FailedRMW``:
  ``Acquire \\ W \\ FailedRMW``, ``Release \\ R \\ FailedRMW``, ``Mb \\ FailedRMW``,
  ``Noreturn \\ W``).

Axioms (all versions)::

    coherence:        acyclic po-loc | rf | co | fr
    atomic:           empty rmw & (fre ; coe)
    happens-before:   acyclic hb
    propagation:      acyclic pb

with, as in the cat files::

    acq-po = [Acquire] ; po ; [M]            po-rel = [M] ; po ; [Release]
    po-unlock-lock-po = po ; [UL] ; (po | rf) ; [LKR] ; po
    rmb = [R4rmb] ; fencerel(Rmb) ; [R4rmb]   (R4rmb = R \\ Noreturn)
    wmb = [W] ; fencerel(Wmb) ; [W]
    mb = [M] ; fencerel(Mb) ; [M] | [M] ; fencerel(Before-atomic) ; [RMW] ; po? ; [M]
       | [M] ; po? ; [RMW] ; fencerel(After-atomic) ; [M] | [M] ; po? ; [LKW] ; fencerel(After-spinlock) ; [M]
       | [M] ; po ; [UL] ; (co | po) ; [LKW] ; fencerel(After-unlock-lock) ; [M]
       (+ the fully ordered RMWs: see below)
    strong-fence = mb                          (gp left out: no RCU)
    nonrw-fence = strong-fence | po-rel | acq-po     fence = nonrw-fence | wmb | rmb
    dep = addr | data   rwdep = (dep | ctrl) ; [W]   overwrite = co | fr
    to-w = rwdep | (overwrite & int)           (addr ; [Plain] ; wmb is empty: no plain accesses)
    to-r = addr | (dep ; rfi)                  (current: (addr ; [R]) | (dep ; rfi))
    ppo = to-r | to-w | fence | (po-unlock-lock-po & int)   (current: fence & int)
    cumul-fence = (rfe? ; (strong-fence | po-rel)) | wmb | po-unlock-lock-po
                  (v01, current: ... ; rmw-sequence, rmw-sequence = (rf ; rmw)*)
    prop = (overwrite & ext)? ; cumul-fence* ; rfe?
    hb = ppo | rfe | ((prop \\ id) & int)
    pb = prop ; strong-fence ; hb*

Every access here is marked (``[Marked]`` is the identity): plain accesses are not
modelled, nor RCU/SRCU (``rb``, ``rcu-fence``, ``gp``) and the data-race flags; the litmus
front end refuses tests that use them.

**Fully ordered RMWs.**  Up to ``v01`` herd7 puts an ``smp_mb()`` before and after a
successful fully ordered RMW (``xchg()``, ``cmpxchg()``, ``atomic_add_return()``, ...): here
the two halves carry the tag ``MB`` and ``mb`` gets what those fences give,
``[M] ; po ; [Mb & R] ; po? ; [M] | [M] ; po? ; [Mb & W] ; po ; [M]``.  ``current`` has the
cat file's two clauses instead.  A failed ``cmpxchg()`` is its read only, and in every
version no Acquire, Release or Mb (``FailedRMW``; before 2024 herd gave it ``once``).

**Locks** (``lock.cat``): a lock is a location holding 0 (free) or 1 (taken).
``spin_lock()`` is a read that waits for 0 (LKR, an Acquire) and the write of 1 it is
paired with (LKW): the pair is in ``rmw``, so ``atomic`` keeps other lock writes out of it,
which is what lock.cat's ``lk-rmw`` and its rf/co construction for LKR/LKW/UL say.
``spin_unlock()`` is a Release write of 0 (UL).  ``spin_trylock()`` reads the lock: reading 0
it writes 1 (LKR, LKW), reading 1 it is LF; ``spin_is_locked()`` is a read (RL / RU).
LF, RL and RU are marked reads and nothing more, which is all lock.cat makes of them.

**How pvspin's operations compile** (``linux-kernel.def``, the kernel's names):

==============================================  ==========================================
operation                                       LKMM events
==============================================  ==========================================
``READ_ONCE``, ``atomic_read``                  R[once]
``smp_load_acquire``, ``atomic_read_acquire``   R[acquire]
``WRITE_ONCE``, ``atomic_set``                  W[once]
``smp_store_release``, ``atomic_set_release``   W[release]
``smp_store_mb``                                W[once] ; F[mb]
``xchg*``, ``cmpxchg*``, ``atomic_fetch_*``     R*[mb|once|acquire] ->rmw W*[mb|once|release]
``atomic_add``, ``atomic_or``, ... (NORETURN)   R*[noreturn] ->rmw W*[once]
``smp_mb``/``rmb``/``wmb``                      F[mb] / F[rmb] / F[wmb]
``smp_mb__{before,after}_atomic``               F[before-atomic] / F[after-atomic]
``smp_mb__after_spinlock``, ``..._unlock_lock``  F[after-spinlock] / F[after-unlock-lock]
``smp_cond_load_*``                             the read that ends the wait, as the load
``spin_lock`` / ``spin_unlock`` (C litmus)      LKR ->rmw LKW / UL
==============================================  ==========================================
"""

from __future__ import annotations

from ....machine import ops as o
from .. import relations as rel
from ..execution import Execution
from ..graph import ACQ, AMO, EXCL, LOCK, MB, NORET, REL, UNLOCK, F, R, W
from . import common

NAME = "lkmm"
VERSIONS = ("v00", "v01", "current")
DEFAULT_VERSION = "current"

_LOADS = {o.RELAXED: 0, o.ACQUIRE: ACQ, o.LOCK: LOCK}
_STORES = {o.RELAXED: 0, o.RELEASE: REL, o.UNLOCK: UNLOCK}
_RMWS = {o.RELAXED: (AMO, AMO), o.NORETURN: (AMO | NORET, AMO), o.ACQUIRE: (AMO | ACQ, AMO),
         o.RELEASE: (AMO, AMO | REL), o.FULL: (AMO | MB, AMO | MB)}
_FENCES = {o.MB: "mb", o.RMB: "rmb", o.WMB: "wmb", o.MB_BEFORE_ATOMIC: "before-atomic",
           o.MB_AFTER_ATOMIC: "after-atomic", o.MB_AFTER_SPINLOCK: "after-spinlock",
           o.MB_AFTER_UNLOCK_LOCK: "after-unlock-lock"}


def compile(op: tuple):
    code = op[0]
    if code == o.LOAD:
        tags = _LOADS.get(op[2])
        return None if tags is None else ((R, tags, None),)
    if code == o.COND_LOAD:
        if op[3] == o.LOCK:  # spin_lock()'s LKR: paired with the LKW that follows
            return ((R, LOCK | EXCL, None),)
        tags = _LOADS.get(op[3])
        return None if tags is None else ((R, tags, None),)
    if code == o.STORE:
        tags = _STORES.get(op[3])
        return None if tags is None else ((W, tags, None),)
    if code == o.LOAD_EX and op[2] == o.LOCK:  # spin_trylock()'s read
        return ((R, LOCK | EXCL, None),)
    if code == o.STORE_EX and op[3] == o.LOCK:  # the LKW
        return ((W, LOCK | EXCL, None),)
    if code in o.RMW_OPS:
        if code == o.XCHG and op[-1] == o.STORE_MB:
            return ((W, 0, None), (F, 0, "mb"))
        tags = _RMWS.get(op[-1])
        return None if tags is None else ((R, tags[0], None), (W, tags[1], None))
    if code == o.FENCE:
        name = _FENCES.get(op[1])
        return None if name is None else ((F, 0, name),)
    return None


def _opt(r: list[int]) -> list[int]:
    """``r?``: ``r`` with the identity."""
    return [row | 1 << i for i, row in enumerate(r)]


def _star(r: list[int]) -> list[int]:
    """``r*``."""
    return _opt(rel.closure(r))


def _fencerel(x, fence: int) -> list[int]:
    """herd's ``fencerel(F) = po ; [F] ; po``."""
    return rel.seq(rel.rng(x.po, fence), x.po)


class Lkmm:
    """One version of the model, with the interface of :mod:`pvspin.check.graph.models`."""

    NAME = NAME

    def __init__(self, version: str = DEFAULT_VERSION):
        if version not in VERSIONS:
            raise ValueError(f"LKMM version {version!r}: expected one of {', '.join(VERSIONS)}")
        self.version = version
        self.rmw_sequences = version != "v00"
        self.current = version == "current"
        self.AXIOMS = (("coherence", common.sc_per_location), ("atomic", common.atomicity),
                       ("happens-before", self._hb_axiom), ("propagation", self._pb_axiom))
        self.FENCE_NAMES = {v: f"smp_{v}" if v in ("mb", "rmb", "wmb") else f"smp_mb__{v.replace('-', '_')}"
                            for v in _FENCES.values()}

    compile = staticmethod(compile)

    def __repr__(self) -> str:
        return f"<LKMM {self.version}>"

    def consistent(self, g) -> bool:
        if common.appends_a_sink(g, pairs_across_records=False):  # consistent as its parent is
            return True
        x = Execution(g)
        if common.sc_per_location(x) is not None or common.atomicity(x) is not None:
            return False
        hb, pb = self.relations(x)
        return rel.acyclic(hb) and rel.acyclic(pb)

    def _hb_axiom(self, x):
        return common.cycle(self.relations(x)[0])

    def _pb_axiom(self, x):
        return common.cycle(self.relations(x)[1])

    # ----------------------------------------------------------------- the cat file
    def sets(self, x) -> dict[str, int]:
        """The bell file's and lock.cat's sets of this execution (every access is Marked)."""
        rmw = x.rmw
        in_rmw = rel.domain(rmw) | rel.range_of(rmw)
        failed = x.tagged(AMO) & ~in_rmw  # FailedRMW: a cmpxchg() that did not store
        lock = x.tagged(LOCK)
        lkr = lock & x.R & rel.domain(rmw)
        return {
            "RMW": x.tagged(AMO) | (lock & in_rmw),
            "LKR": lkr,
            "LKW": lock & x.W,
            "UL": x.tagged(UNLOCK),
            "Acquire": (x.tagged(ACQ) & x.R & ~failed) | lkr,
            "Release": (x.tagged(REL) & x.W & ~failed) | x.tagged(UNLOCK),
            "Mb": x.tagged(MB) & ~failed,
            "Noreturn": x.tagged(NORET) & x.R,
        }

    def relations(self, x) -> tuple[list[int], list[int]]:
        """``(hb, pb)``, the relations the happens-before and propagation axioms require acyclic."""
        cache = getattr(x, "_lkmm", None)
        if cache is not None and cache[0] == self.version:
            return cache[1]
        out = self._relations(x)
        x._lkmm = (self.version, out)
        return out

    def strong_fence(self, x, s: dict[str, int]) -> list[int]:
        po, M = x.po, x.M
        po_opt = _opt(po)
        mb = rel.restrict(M, _fencerel(x, x.fences("mb")), M)
        before = x.fences("before-atomic")
        if before:
            mb = rel.union(mb, rel.restrict(M, rel.seq(rel.rng(_fencerel(x, before), s["RMW"]), po_opt), M))
        after = x.fences("after-atomic")
        if after:
            mb = rel.union(mb, rel.restrict(M, rel.seq(rel.rng(po_opt, s["RMW"]), _fencerel(x, after)), M))
        spin = x.fences("after-spinlock")
        if spin:
            mb = rel.union(mb, rel.restrict(M, rel.seq(rel.rng(po_opt, s["LKW"]), _fencerel(x, spin)), M))
        ulk = x.fences("after-unlock-lock")
        if ulk:
            co_po = rel.union(x.co, po)
            chain = rel.seq(rel.rng(rel.seq(rel.rng(po, s["UL"]), co_po), s["LKW"]), _fencerel(x, ulk))
            mb = rel.union(mb, rel.restrict(M, chain, M))
        full = s["Mb"]
        if full:
            mb_r, mb_w = full & x.R, full & x.W
            if self.current:  # [M] ; po ; [Mb & R]  |  [Mb & W] ; po ; [M]
                mb = rel.union(mb, rel.restrict(M, po, mb_r), rel.restrict(mb_w, po, M))
            else:  # herd7's smp_mb() before the read and after the write
                mb = rel.union(mb, rel.restrict(M, rel.seq(rel.rng(po, mb_r), po_opt), M),
                               rel.restrict(M, rel.seq(rel.rng(po_opt, mb_w), po), M))
        return mb

    def _relations(self, x) -> tuple[list[int], list[int]]:
        s = self.sets(x)
        po, M, R_, W_ = x.po, x.M, x.R, x.W
        rf, co, fr = x.rf, x.co, x.fr
        internal = x.int
        rfe, rfi = rel.inter(rf, x.ext), rel.inter(rf, internal)
        acq_po = rel.restrict(s["Acquire"], po, M)
        po_rel = rel.restrict(M, po, s["Release"])
        # po-unlock-lock-po = po ; [UL] ; (po | rf) ; [LKR] ; po
        if s["UL"] and s["LKR"]:
            pulp = rel.seq(rel.rng(rel.seq(rel.rng(po, s["UL"]), rel.union(po, rf)), s["LKR"]), po)
        else:
            pulp = [0] * x.n
        r4rmb = R_ & ~s["Noreturn"]
        rmb = rel.restrict(r4rmb, _fencerel(x, x.fences("rmb")), r4rmb)
        wmb = rel.restrict(W_, _fencerel(x, x.fences("wmb")), W_)
        strong = self.strong_fence(x, s)
        fence = rel.union(strong, po_rel, acq_po, wmb, rmb)
        addr, data, ctrl = x.addr, x.data, x.ctrl
        if self.current:  # carry-dep = (data ; rfi)*; addr, data, ctrl = carry-dep ; addr, data, ctrl
            data_rfi = rel.seq(data, rfi)
            if any(data_rfi):
                carry = _star(data_rfi)
                addr, data, ctrl = rel.seq(carry, addr), rel.seq(carry, data), rel.seq(carry, ctrl)
        dep = rel.union(addr, data)
        rwdep = rel.rng(rel.union(dep, ctrl), W_)
        overwrite = rel.union(co, fr)
        to_w = rel.union(rwdep, rel.inter(overwrite, internal))
        to_r = rel.union(rel.rng(addr, R_) if self.current else addr, rel.seq(dep, rfi))
        ppo = rel.union(to_r, to_w, rel.inter(fence, internal) if self.current else fence,
                        rel.inter(pulp, internal))
        # cumul-fence = (A-cumul(strong-fence | po-rel) | wmb | po-unlock-lock-po) ; rmw-sequence
        sf_rel = rel.union(strong, po_rel)
        cumul = rel.union(sf_rel, rel.seq(rfe, sf_rel), wmb, pulp)
        if self.rmw_sequences and any(x.rmw):
            cumul = rel.seq(cumul, _star(rel.seq(rf, x.rmw)))
        # prop = (overwrite & ext)? ; cumul-fence* ; rfe?
        prop = rel.seq(rel.seq(_opt(rel.inter(overwrite, x.ext)), _star(cumul)), _opt(rfe))
        prop_int = rel.inter([row & ~(1 << i) for i, row in enumerate(prop)], internal)
        hb = rel.union(ppo, rfe, prop_int)
        # pb = prop ; strong-fence ; hb*
        pb = rel.seq(rel.seq(prop, strong), _star(hb))
        return hb, pb


_MODELS = {v: Lkmm(v) for v in VERSIONS}


def model(version: str = DEFAULT_VERSION) -> Lkmm:
    """The model of one version (``v00``, ``v01``, ``current``); ValueError for another."""
    if version not in _MODELS:
        raise ValueError(f"LKMM version {version!r}: expected one of {', '.join(VERSIONS)}")
    return _MODELS[version]
