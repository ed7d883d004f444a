"""A log-linear histogram of non-negative integers: bounded memory, ~3% relative precision.

Values below 64 are counted exactly; above, each power of two is split into 32 buckets
(the layout HdrHistogram uses), so percentiles of latencies spanning nanoseconds to
seconds are kept in a few hundred counters however long the run.
"""

from __future__ import annotations

_SUB_BITS = 5
_SUB = 1 << _SUB_BITS


class Histogram:
    __slots__ = ("counts", "total", "maximum")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0
        self.maximum = 0

    def clear(self) -> None:
        self.counts.clear()
        self.total = 0
        self.maximum = 0

    @staticmethod
    def _bucket(value: int) -> int:
        if value < 2 * _SUB:
            return value
        shift = value.bit_length() - _SUB_BITS - 1
        return (shift << _SUB_BITS) + (value >> shift)

    @staticmethod
    def _lower_bound(bucket: int) -> int:
        if bucket < 2 * _SUB:
            return bucket
        shift = (bucket >> _SUB_BITS) - 1
        return ((bucket & (_SUB - 1)) + _SUB) << shift

    def add(self, value: int) -> None:
        b = self._bucket(value)
        self.counts[b] = self.counts.get(b, 0) + 1
        self.total += 1
        if value > self.maximum:
            self.maximum = value

    def percentile(self, p: float) -> int:
        """The value below which ``p`` percent of the samples fall (to the histogram's precision)."""
        if not self.total:
            return 0
        if p >= 100:
            return self.maximum
        rank = max(1, -(-int(p * self.total) // 100))
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                return min(self._lower_bound(b), self.maximum)
        return self.maximum
