"""`orch fit`'s cost: Approach 3 on 250 points with 500 bootstrap refits (goal: under 10 s here).

250 points from Chinchilla's own law (Hoffmann et al. 2022: E=1.69, A=406.4, B=410.7, alpha=0.34,
beta=0.28), 10 model sizes x 25 token counts, 1% log-normal noise. Prints the time of the fit alone
(grid pass + L-BFGS-B from the 64 best grid starts), of the bootstrap, and how close the fit came.

Run: .venv/bin/python benchmarks/bench_fit.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from orchestrator.analysis.scaling_law import LawParameters, fit_law  # noqa: E402

TRUE = LawParameters(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def main() -> int:
    rng = np.random.default_rng(0)
    params = np.repeat(np.logspace(7, 9.5, 10), 25)
    tokens = np.tile(np.logspace(9, 11.5, 25), 10)
    loss = TRUE.loss(params, tokens) * np.exp(rng.normal(0, 0.01, params.size))
    start = time.perf_counter()
    alone = fit_law(params, tokens, loss)
    fit_secs = time.perf_counter() - start
    start = time.perf_counter()
    with_intervals = fit_law(params, tokens, loss, bootstrap=500, seed=0)
    total_secs = time.perf_counter() - start
    print(f"250 points: fit {fit_secs:.2f} s; fit + 500 bootstrap refits {total_secs:.2f} s (goal < 10 s)")
    for name, value in TRUE.as_dict().items():
        low, high = with_intervals.intervals[name]
        print(f"  {name:<6} true {value:<8g} fitted {getattr(alone.law, name):<10.4g} 95% [{low:.4g}, {high:.4g}]")
    return 0 if total_secs < 10 else 1


if __name__ == "__main__":
    sys.exit(main())
