"""`orch predict`'s cost and accuracy on the Multi-Power Law authors' own curves (tests/fixtures/multipowerlaw).

For each model size (25M, 100M, 400M): fit on their three training curves (451-453 points), predict the six
held-out schedules at their observed steps; prints the fit and predict times (best of 2) and the held-out mean and
worst relative errors beside the ones the authors publish, for both laws.

Run: .venv/bin/python benchmarks/bench_predict.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402

from benchmarks.timing import best_of  # noqa: E402
from multipowerlaw import PUBLISHED, TEST, TRAIN, observed, schedule  # noqa: E402
from orchestrator.analysis.loss_fit import fit_law, predict  # noqa: E402
from orchestrator.analysis.loss_laws import Curve  # noqa: E402
from orchestrator.analysis.threads import limit_numeric_threads  # noqa: E402


def main() -> int:
    limit_numeric_threads()
    print(f"{'size':>5} {'law':>7} {'fit s':>7} {'predict s':>10} {'PredE':>8} {'WorstE':>8}  published PredE / WorstE")
    for size in sorted(PUBLISHED, key=int):
        training = [Curve(name, 0, schedule(name), *observed(size, name)) for name in TRAIN]
        held_out = [Curve(name, 0, schedule(name), *observed(size, name)) for name in TEST]
        for law in ("mpl", "tissue"):
            fitted = {}
            fit_seconds = best_of(2, lambda: fitted.update(result=fit_law(training, law)))
            started = time.perf_counter()
            predicted = [predict(fitted["result"], curve)[0] for curve in held_out]
            predict_seconds = time.perf_counter() - started
            relative = [np.abs(curve.loss - values) / curve.loss for curve, values in zip(held_out, predicted)]
            pred_e = np.mean([errors.mean() for errors in relative])
            worst_e = np.mean([errors.max() for errors in relative])
            published = PUBLISHED[size] if law == "mpl" else ("-", "-")
            print(f"{size + 'M':>5} {law:>7} {fit_seconds:7.1f} {predict_seconds:10.2f} {pred_e:8.5f} {worst_e:8.5f}  "
                  f"{published[0]} / {published[1]}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
