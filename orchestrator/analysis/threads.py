"""Numeric work that shares a login node: one BLAS / OpenMP thread unless told otherwise.

orch's fits work on at most a few thousand points: their matrices are tiny, so BLAS threads buy nothing and
their spinning workers cost a lot once two processes share the cores (two `orch fit` on 2 cores took 55 s each
instead of 3.6 s). threadpoolctl sets the limit in every BLAS and OpenMP library numpy and scipy loaded.
`ORCH_NUMERIC_THREADS=N` allows N threads; `0` leaves the libraries' own default.
"""

from __future__ import annotations

import os

from orchestrator.errors import UserError

THREADS_VARIABLE = "ORCH_NUMERIC_THREADS"
DEFAULT_THREADS = 1


def numeric_threads() -> int | None:
    """The thread limit to apply (None: none)."""
    text = os.environ.get(THREADS_VARIABLE, "").strip()
    if not text:
        return DEFAULT_THREADS
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"{THREADS_VARIABLE}={text!r}: give a number of threads (0: the libraries' default)") from None
    if value < 0:
        raise UserError(f"{THREADS_VARIABLE}={text!r}: give a number of threads (0: the libraries' default)")
    return value or None


def limit_numeric_threads() -> None:
    """Apply the limit for the rest of the process (after numpy/scipy are imported: it acts on loaded libraries)."""
    limit = numeric_threads()
    if limit is None:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=limit)
