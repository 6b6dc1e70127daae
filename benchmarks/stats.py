"""Small statistics helpers: medians, paired ratios, latency percentiles, and the
rotating order in which measured things take turns, round after round."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import TypeVar

__all__ = ["median", "paired_ratio", "percentile", "percentiles_ms", "rotate"]

T = TypeVar("T")


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values."""
    return statistics.median(values) if values else math.nan


def paired_ratio(values: Sequence[float], baseline: Sequence[float]) -> float:
    """Median over rounds of ``values[i] / baseline[i]``.

    Both were measured in the same round, so slow drift of the machine cancels out
    of each ratio; the median drops rounds disturbed by something else.
    """
    ratios = [v / b for v, b in zip(values, baseline, strict=False) if b > 0]
    return median(ratios)


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of already sorted values; NaN if none."""
    if not ordered:
        return math.nan
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return float(ordered[rank])


def percentiles_ms(latencies_ns: Sequence[int]) -> dict[str, float]:
    """p50, p90 and p99 of nanosecond latencies, in milliseconds."""
    ordered = sorted(latencies_ns)
    return {
        name: percentile(ordered, fraction) / 1e6
        for name, fraction in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99))
    }


def rotate(items: Sequence[T], by: int) -> list[T]:
    """``items`` rotated left by ``by``: the order of round ``by``, so that each item
    takes each place in turn."""
    shift = by % len(items)
    return [*items[shift:], *items[:shift]]
