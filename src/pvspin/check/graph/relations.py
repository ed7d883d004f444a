"""Relations over the events of one execution graph, as lists of bit masks.

A relation over ``n`` events is a list of ``n`` integers, row ``i`` the set of ``j`` with
``(i, j)`` in it; a set of events is one integer.  These are the operators the cat
language builds memory models from (herd's ``;``, ``|``, ``&``, ``\\``, ``[S]``,
``^-1``, ``+``), over graphs of a few hundred events at most, where Python's big
integers make a row operation one machine-word loop in C.
"""

from __future__ import annotations


def empty(n: int) -> list[int]:
    return [0] * n


def bits(mask: int):
    """The members of a set, ascending."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def union(*rels: list[int]) -> list[int]:
    out = list(rels[0])
    for r in rels[1:]:
        for i, row in enumerate(r):
            if row:
                out[i] |= row
    return out


def inter(a: list[int], b: list[int]) -> list[int]:
    return [x & y for x, y in zip(a, b, strict=True)]


def minus(a: list[int], b: list[int]) -> list[int]:
    return [x & ~y for x, y in zip(a, b, strict=True)]


def seq(a: list[int], b: list[int]) -> list[int]:
    """``a ; b``."""
    out = [0] * len(a)
    for i, row in enumerate(a):
        acc = 0
        while row:
            low = row & -row
            acc |= b[low.bit_length() - 1]
            row ^= low
        out[i] = acc
    return out


def dom(s: int, r: list[int]) -> list[int]:
    """``[s] ; r``."""
    return [row if s >> i & 1 else 0 for i, row in enumerate(r)]


def rng(r: list[int], s: int) -> list[int]:
    """``r ; [s]``."""
    return [row & s for row in r]


def restrict(s: int, r: list[int], t: int) -> list[int]:
    """``[s] ; r ; [t]``."""
    return [row & t if s >> i & 1 else 0 for i, row in enumerate(r)]


def inverse(r: list[int]) -> list[int]:
    out = [0] * len(r)
    for i, row in enumerate(r):
        bit = 1 << i
        while row:
            low = row & -row
            out[low.bit_length() - 1] |= bit
            row ^= low
    return out


def identity_on(s: int, n: int) -> list[int]:
    return [1 << i if s >> i & 1 else 0 for i in range(n)]


def domain(r: list[int]) -> int:
    out = 0
    for i, row in enumerate(r):
        if row:
            out |= 1 << i
    return out


def range_of(r: list[int]) -> int:
    out = 0
    for row in r:
        out |= row
    return out


def is_empty(r: list[int]) -> bool:
    return not any(r)


def closure(r: list[int]) -> list[int]:
    """``r+``: transitive closure (Warshall over bit rows)."""
    out = list(r)
    for k in range(len(out)):
        kbit = 1 << k
        krow = out[k]
        if not krow:
            continue
        for i in range(len(out)):
            if out[i] & kbit:
                out[i] |= krow
    return out


def find_cycle(r: list[int]) -> list[int] | None:
    """Some cycle of ``r`` as a list of events (the first repeated at the end left out), or None if acyclic."""
    n = len(r)
    state = [0] * n  # 0 unvisited, 1 on the path, 2 done
    for start in range(n):
        if state[start]:
            continue
        path = [start]
        pending = [r[start]]
        state[start] = 1
        while path:
            row = pending[-1]
            if not row:
                state[path.pop()] = 2
                pending.pop()
                continue
            low = row & -row
            pending[-1] = row ^ low
            j = low.bit_length() - 1
            if state[j] == 1:
                return path[path.index(j):]
            if state[j] == 0:
                state[j] = 1
                path.append(j)
                pending.append(r[j])
    return None


def acyclic(r: list[int]) -> bool:
    """Whether ``r`` has no cycle: depth first, a node's unexplored successors and the current path as bit masks."""
    done = 0
    for start in range(len(r)):
        if done >> start & 1:
            continue
        path = 1 << start
        stack = [start]
        rests = [r[start]]
        while stack:
            rest = rests[-1] & ~done
            if rest & path:
                return False
            if not rest:
                u = stack.pop()
                rests.pop()
                path ^= 1 << u
                done |= 1 << u
                continue
            low = rest & -rest
            rests[-1] = rest ^ low
            stack.append(low.bit_length() - 1)
            rests.append(r[low.bit_length() - 1])
            path |= low
    return True
