"""What the benchmarks share: percentiles as they report them."""

from __future__ import annotations

import statistics


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0 < q < 1) of `values`, interpolated between the nearest two."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]
