"""Bounded caches for values the checker computes from the search's immutable key tuples."""

from __future__ import annotations


class IdentityCache:
    """Values computed from key objects the search reuses (a CPU's state, a frame's key), by identity.

    Tuples of generator keys are costly to hash and equal ones are rarely shared, while the
    same object comes back whenever the search returns to a state where the CPU has not
    moved.  Two generations bound the memory: when the newer fills up, the older goes.
    """

    SIZE = 1 << 12  # per generation: the search comes back mostly to states it left recently

    __slots__ = ("new", "old")

    def __init__(self):
        self.new: dict = {}
        self.old: dict = {}

    def get(self, obj):
        """The value put for ``obj``, or None."""
        key = id(obj)
        for generation in (self.new, self.old):
            hit = generation.get(key)
            if hit is not None and hit[0] is obj:  # the id may have been reused by a newer object
                return hit[1]
        return None

    def put(self, obj, value) -> None:
        if len(self.new) >= self.SIZE:
            self.old = self.new
            self.new = {}
        self.new[id(obj)] = (obj, value)


class ValueCache:
    """Values computed from key tuples, by equality: a rebuilt generator gives equal keys in new objects.

    Emptied when full; what the search needs again is soon computed again.
    """

    SIZE = 1 << 14

    __slots__ = ("values",)

    def __init__(self):
        self.values: dict = {}

    def get(self, key):
        """The value put for a key equal to ``key``, or None."""
        return self.values.get(key)

    def put(self, key, value) -> None:
        if len(self.values) >= self.SIZE:
            self.values.clear()
        self.values[key] = value
