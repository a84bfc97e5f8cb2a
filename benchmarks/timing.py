"""What the benchmarks share: the best time of a few runs (the least disturbed by the rest of the machine)."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(runs: int, function: Callable[[], object]) -> float:
    """The shortest of `runs` timings of `function()`, in seconds."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)
