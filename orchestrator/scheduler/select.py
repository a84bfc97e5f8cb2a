"""Pick the scheduler backend for `--scheduler {auto,slurm,local}`."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from orchestrator.scheduler.base import Scheduler

SCHEDULER_CHOICES = ("auto", "slurm", "local")


def resolve_choice(choice: str, which: Callable[[str], str | None] = shutil.which) -> str:
    """`auto` means Slurm when `sbatch` is on PATH, else the local backend."""
    if choice not in SCHEDULER_CHOICES:
        raise ValueError(f"unknown scheduler {choice!r} (choose from {', '.join(SCHEDULER_CHOICES)})")
    if choice == "auto":
        return "slurm" if which("sbatch") else "local"
    return choice


def select_scheduler(choice: str = "auto", state_dir: str | Path | None = None) -> Scheduler:
    """The backend for `choice`; `state_dir` is where the local backend keeps its jobs (default .orch/local)."""
    if resolve_choice(choice) == "slurm":
        from orchestrator.scheduler.slurm import SlurmScheduler

        return SlurmScheduler()
    from orchestrator.scheduler.local import DEFAULT_STATE_DIR, LocalScheduler

    return LocalScheduler(state_dir if state_dir is not None else DEFAULT_STATE_DIR)
