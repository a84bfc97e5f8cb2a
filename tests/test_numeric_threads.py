"""numpy/scipy's thread pools are limited before orch's numeric commands compute (a login node is shared)."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = ("from orchestrator.cli.common import require_science; require_science('probe'); "
         "from threadpoolctl import threadpool_info; "
         "print(sorted({pool['num_threads'] for pool in threadpool_info()}))")
UNLIMITED = "import numpy, scipy.linalg; from threadpoolctl import threadpool_info; " \
            "print(sorted({pool['num_threads'] for pool in threadpool_info()}))"


def probe(code: str, **env: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_every_pool_numpy_and_scipy_loaded_runs_one_thread_by_default():
    assert probe(PROBE) == "[1]"


def test_the_variable_allows_more_and_zero_leaves_the_libraries_default():
    assert probe(PROBE, ORCH_NUMERIC_THREADS="2") == "[2]"
    assert probe(PROBE, ORCH_NUMERIC_THREADS="0") == probe(UNLIMITED)


def test_a_bad_value_is_one_line_naming_the_variable(tmp_path):
    points = tmp_path / "points.csv"
    points.write_text("params,tokens,loss\n1e7,1e9,3.0\n")
    result = subprocess.run([sys.executable, "-m", "orchestrator", "fit", str(points)], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "ORCH_NUMERIC_THREADS": "many"})
    assert result.returncode == 2 and "ORCH_NUMERIC_THREADS='many'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
