"""Two `orch fit` at once on a shared login node: BLAS threads limited (the default) vs the libraries' own.

Writes 250 points of Chinchilla's law (as bench_fit.py) to a CSV, then times `orch fit CSV` (500 bootstrap
refits) alone and two side by side, first with orch's limit (one BLAS thread, `analysis.threads`), then with
`ORCH_NUMERIC_THREADS=0` (numpy/scipy's default: one thread per core).

Run: .venv/bin/python benchmarks/bench_concurrent_fit.py
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TRUE = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def write_points(path: Path) -> None:
    rng = np.random.default_rng(0)
    params = np.repeat(np.logspace(7, 9.5, 10), 25)
    tokens = np.tile(np.logspace(9, 11.5, 25), 10)
    loss = (TRUE["E"] + TRUE["A"] / params ** TRUE["alpha"] + TRUE["B"] / tokens ** TRUE["beta"]) \
        * np.exp(rng.normal(0, 0.01, params.size))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["params", "tokens", "loss"])
        writer.writerows(zip(params, tokens, loss))


def timed(count: int, csv_path: Path, threads: str | None) -> list[float]:
    env = dict(os.environ)
    if threads is not None:
        env["ORCH_NUMERIC_THREADS"] = threads
    command = [sys.executable, "-m", "orchestrator", "fit", str(csv_path), "--loss-col", "loss"]
    start = time.perf_counter()
    processes = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
                 for _ in range(count)]
    ends = []
    for process in processes:
        _, error = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"orch fit failed: {error.decode()[-500:]}")
        ends.append(time.perf_counter() - start)
    return ends


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        points = Path(folder) / "points.csv"
        write_points(points)
        print(f"{os.cpu_count()} cores; orch fit on 250 points with 500 bootstrap refits")
        for label, threads in (("limited (default: 1 BLAS thread)", None), ("unlimited (ORCH_NUMERIC_THREADS=0)", "0")):
            alone = timed(1, points, threads)[0]
            pair = timed(2, points, threads)
            print(f"  {label:<36} alone {alone:6.1f} s; two at once {pair[0]:6.1f} s and {pair[1]:6.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
