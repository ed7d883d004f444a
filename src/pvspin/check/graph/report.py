"""Reports of the execution-graph checker: what was checked, and a counterexample that explains the reordering.

A counterexample is the execution graph of the violation, listed in an order the memory
model allows (a topological order of its ordered-before relation: ``ob`` for ARMv8,
``ghb`` for TSO, ``po | rf | co | fr`` for SC), one line per event with the CPU, the
kernel function and line, the operation, and the value read or written -- and, where the
execution is weak, why:

* a read that read an older write than one already listed: *which store was not yet
  visible to which CPU*;
* two events of one CPU listed out of program order: the accesses that were reordered,
  and what would forbid it (a barrier, an ``_acquire`` on the read, a ``_release`` on
  the write, a dependency);
* for a blocked spin-wait, the store that left its location failing the condition, and
  the store it overwrote if that one would have released it.

``to_dot`` draws the graph for graphviz: threads as columns, po, rf, co and fr edges.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...machine import ops as o
from . import relations as rel
from .execution import Execution
from .graph import F, Graph, R, Rec, W, where
from .models import armv8, tso


@dataclass
class Line:
    n: int
    cpu: int
    function: str
    line: str
    action: str
    notes: list[str]

    def as_dict(self) -> dict:
        return {"n": self.n, "cpu": self.cpu, "function": self.function, "line": self.line, "action": self.action,
                "notes": self.notes}


def _order_relation(x: Execution, model_name: str) -> list[int]:
    if model_name == "armv8":
        base = armv8.ob(x)
    elif model_name == "tso":
        base = rel.union(x.po_loc, tso.ghb_relation(x))
    else:
        base = rel.union(x.po, x.rf, x.co, x.fr)
    return rel.union(base, x.rf, x.co)


def linearize(x: Execution, model_name: str) -> list[int]:
    """Event indices (initial writes left out) in a topological order of the model's order, ties by CPU and slot."""
    order = _order_relation(x, model_name)
    base = len(x.locs)
    events = list(range(base, x.n))
    indeg = {i: 0 for i in events}
    for i in events:
        for j in rel.bits(order[i]):
            if j in indeg:
                indeg[j] += 1
    key = {i: (where(x.events[i - base].id)[1], where(x.events[i - base].id)[0], x.events[i - base].id)
           for i in events}
    ready = sorted((i for i in events if not indeg[i]), key=key.get)
    out = []
    while ready:
        i = ready.pop(0)
        out.append(i)
        for j in rel.bits(order[i]):
            if j in indeg:
                indeg[j] -= 1
                if not indeg[j]:
                    ready.append(j)
        ready.sort(key=key.get)
    if len(out) < len(events):  # a cycle: an inconsistent graph (a forbidden litmus outcome); po order for the rest
        out += sorted((i for i in events if i not in out), key=key.get)
    return out


def explain(g: Graph, model_name: str, name_of) -> list[Line]:
    """The counterexample's lines."""
    x = Execution(g)
    base = len(x.locs)
    order = linearize(x, model_name)
    step_of = {i: n + 1 for n, i in enumerate(order)}
    co = x.co
    lines = []

    def who(i: int) -> str:
        if i < base:
            return "the initial value"
        t, _, _ = where(x.events[i - base].id)
        return f"cpu{t}'s store at step {step_of[i]}"

    for n, i in enumerate(order):
        ev = x.events[i - base]
        t, slot, part = where(ev.id)
        rec = g.threads[t][slot]
        function, line = rec.where
        loc = name_of(ev.loc, ev.size) if ev.kind != F else ""
        notes = []
        if ev.kind == F:
            action = f"fence {armv8.FENCE_NAMES.get(ev.fence, ev.fence)} ({o.describe(rec.op, _ref_namer(name_of))})"
        elif ev.kind == R:
            src = None
            for w in rel.bits(rel.inverse(x.rf)[i]):
                src = w
            if src is None:
                action = f"{o.describe(rec.op, _ref_namer(name_of))}: blocked"
            else:
                action = f"{o.describe(rec.op, _ref_namer(name_of))}: read {loc} = {ev.val:#x} from {who(src)}"
                newer = [w for w in rel.bits(co[src]) if w >= base and step_of.get(w, 1 << 30) < step_of[i]]
                if newer:
                    notes.append(f"{who(newer[-1])} to {loc} is newer but not yet visible to cpu{t}")
        else:
            kind = "RMW write" if part else "store"
            action = f"{o.describe(rec.op, _ref_namer(name_of))}: {kind} {loc} := {ev.val:#x}"
        # reordering within the CPU: something po-later listed before it
        for j in order[:n]:
            other = x.events[j - base]
            ot, oslot, _ = where(other.id)
            if ot == t and other.id > ev.id and other.kind != F and ev.kind != F:
                notes.append(f"reordered after cpu{t}'s later {_kind(other)} at step {step_of[j]}: "
                             f"{_forbid(ev, other)} would forbid it")
                break
        lines.append(Line(n + 1, t, function, line, action, notes))
    return lines


def _kind(ev) -> str:
    return "read" if ev.kind == R else "store"


def _forbid(first, later) -> str:
    """What orders ``first`` before the po-later ``later`` under ARMv8 (and the kernel's names for it)."""
    if first.kind == R and later.kind == W:
        return "an _acquire on the read, a _release on the store, a dependency or smp_mb()"
    if first.kind == R:
        return "an _acquire on the first read, an address dependency, smp_rmb() or smp_mb()"
    if later.kind == W:
        return "a _release on the later store, smp_wmb() or smp_mb()"
    return "smp_mb() (or a _release store followed by an _acquire read)"


def _ref_namer(name_of):
    return lambda ref: name_of(ref.addr, ref.size)


def stale_overwrite(g: Graph, name_of, cond_of) -> str | None:
    """For a stuck wait: the store that left its location failing the condition, and the one it overwrote."""
    for t, recs in enumerate(g.threads):
        for rec in recs:
            if type(rec) is not Rec or not rec.events:
                continue
            read = rec.events[0]
            if read.kind != R or rec.op[0] != o.COND_LOAD or rec.op[4] is not None or rec.op[2](read.val):
                continue
            order = g.co.get(read.loc, ())
            if not order:
                return None
            last = g.event(order[-1])
            released = [w for w in order[:-1] if rec.op[2](g.event(w).val)]
            lt, ls, _ = where(last.id)
            text = (f"the last store to {name_of(read.loc, read.size)} is cpu{lt}'s "
                    f"{o.describe(g.threads[lt][ls].op, _ref_namer(name_of))} ({last.val:#x})")
            if released:
                wt, ws, _ = where(released[-1])
                text += (f", coherence-after cpu{wt}'s {o.describe(g.threads[wt][ws].op, _ref_namer(name_of))}, "
                         f"which would have released cpu{t}: it became visible late and overwrote it")
            return text
    return None


def to_dot(g: Graph, model_name: str, name_of, title: str) -> str:
    """The graph in graphviz's language: a column per CPU, po (black), rf (green), co (red), fr (orange)."""
    x = Execution(g)
    base = len(x.locs)
    lines = ["digraph execution {", f'  label="{title}"; labelloc=t; rankdir=TB; node [shape=box, fontsize=10];']
    for i, loc in enumerate(x.locs):
        lines.append(f'  e{i} [label="init {name_of(loc, 4)}", style=dashed];')
    by_thread: dict[int, list[int]] = {}
    for i in range(base, x.n):
        ev = x.events[i - base]
        t, slot, _ = where(ev.id)
        by_thread.setdefault(t, []).append(i)
        rec = g.threads[t][slot]
        text = o.describe(rec.op, _ref_namer(name_of)).replace('"', "'")
        val = "" if ev.kind == F else f" = {ev.val:#x}"
        lines.append(f'  e{i} [label="{ev.kind} {text}{val}"];')
    for t, members in sorted(by_thread.items()):
        lines.append(f'  subgraph cluster_{t} {{ label="cpu{t}"; ' + " ".join(f"e{i};" for i in members) + " }")
        for a, b in zip(members, members[1:], strict=False):
            lines.append(f"  e{a} -> e{b} [label=po];")
    for name, relation, colour in (("rf", x.rf, "green"), ("co", _immediate(x.co), "red"), ("fr", _immediate(x.fr),
                                                                                             "orange")):
        for i, row in enumerate(relation):
            for j in rel.bits(row):
                lines.append(f'  e{i} -> e{j} [label={name}, color={colour}, fontcolor={colour}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _immediate(r: list[int]) -> list[int]:
    """The edges of a transitive relation that no other edge implies (its Hasse diagram)."""
    implied = rel.seq(r, r)
    return [row & ~imp for row, imp in zip(r, implied, strict=True)]

