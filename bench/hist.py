"""A small log-linear histogram of latencies in microseconds (about 1.6 % resolution).

Recording is one dict update; histograms from several generator processes merge
by adding counts, so no process ever ships its raw samples.
"""

from __future__ import annotations

#: values below this are kept exactly; above, each power of two has this many buckets
_SUB = 128
_SUB_BITS = 7


def bucket(us: int) -> int:
    """The bucket index of a value in microseconds."""
    if us < _SUB:
        return us if us > 0 else 0
    shift = us.bit_length() - _SUB_BITS
    return (shift << _SUB_BITS) | (us >> shift)


def bucket_value(index: int) -> float:
    """The middle of bucket ``index``, in microseconds."""
    shift = index >> _SUB_BITS
    low = (index & (_SUB - 1)) << shift
    return low + ((1 << shift) - 1) / 2


class Histogram:
    """Counts of latencies; ``add`` takes microseconds."""

    __slots__ = ("counts", "count", "max_us")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.count = 0
        self.max_us = 0

    def add(self, us: int) -> None:
        b = bucket(us)
        self.counts[b] = self.counts.get(b, 0) + 1
        self.count += 1
        if us > self.max_us:
            self.max_us = us

    def merge(self, other: Histogram | dict) -> None:
        """Add another histogram (or its :meth:`to_dict`) into this one."""
        d = other.to_dict() if isinstance(other, Histogram) else other
        for k, v in d["counts"].items():
            k = int(k)
            self.counts[k] = self.counts.get(k, 0) + v
        self.count += d["count"]
        self.max_us = max(self.max_us, d["max_us"])

    def percentile(self, p: float) -> float | None:
        """The ``p``-th percentile (0-100) in microseconds, or None when empty."""
        if not self.count:
            return None
        rank = max(1, round(self.count * p / 100))
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen >= rank:
                return min(bucket_value(b), float(self.max_us))
        return float(self.max_us)  # pragma: no cover - rank <= count

    def summary_ms(self) -> dict[str, float | int | None]:
        """p50/p90/p99/max in milliseconds and the sample count."""
        def ms(v: float | None) -> float | None:
            return None if v is None else round(v / 1000, 2)

        return {"p50_ms": ms(self.percentile(50)), "p90_ms": ms(self.percentile(90)),
                "p99_ms": ms(self.percentile(99)),
                "max_ms": ms(float(self.max_us)) if self.count else None,
                "samples": self.count}

    def to_dict(self) -> dict:
        """A picklable, JSON-able form."""
        return {"counts": dict(self.counts), "count": self.count, "max_us": self.max_us}
