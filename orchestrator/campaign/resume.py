"""Where a restarted training job resumes: the newest whole save, with the dead saves above it moved aside.

DeepSpeed resumes from the tag its `latest` names (`engine.load_checkpoint(dir, tag=None)`), and `latest` is
only a hint: rank 0 writes it at ZeRO 0-2 without waiting for the other ranks, so after a kill mid-save it names
a save one rank never finished, or it is empty (rank 0 killed between truncating and writing it). A run started
from it fails to load ("failed finding central directory") or, worse, a later save of the same tag lands in the
dead folder file by file: while the resumed run rewrites it, the old attempt's whole files and the new
attempt's make a folder whose every file is whole but whose ranks come from two runs.

So before a training job starts, `resume_point` takes the newest complete save (`checkpoints`' rule: every
file whole, every rank there, at or below a commit point), moves every incomplete real folder above it to
`checkpoints/.incomplete/<name>.<stamp>` (kept for a post-mortem, never read again), and points DeepSpeed's
`latest` at the resume save (removed when there is none, so the trainer starts from scratch instead of failing).
Megatron's tracker is left alone: it is a commit point its trainer reads itself. Linked folders (a cooldown's
branch point) are never moved: a link is made only to a complete save. Only the job about to train calls this,
so no writer of this run is running; a converter of the same run reads only complete saves, which stay.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.campaign.checkpoints import DEEPSPEED_TRACKER, Checkpoint, inspect_checkpoints
from orchestrator.files import write_atomically

INCOMPLETE_DIR = ".incomplete"


@dataclass(frozen=True)
class ResumePoint:
    iteration: int | None
    """The newest complete training save (None: start from scratch)."""
    folder: Path | None
    moved: list[tuple[Path, Path, str]] = field(default_factory=list)
    """(from, to, why it was incomplete) for every dead save moved aside."""
    latest: str = ""
    """What was done to DeepSpeed's `latest` ("" when nothing)."""


def _newest(verdicts: list[Checkpoint]) -> tuple[int, Path] | None:
    saves = [c for c in verdicts if c.complete and not c.universal]
    if not saves:
        return None
    newest = max(saves, key=lambda checkpoint: checkpoint.iteration)
    return newest.iteration, newest.path


def newest_complete(run_dir: str | Path) -> tuple[int, Path] | None:
    """(iteration, folder) of the newest complete training save of RUN_DIR (universal twins aside)."""
    return _newest(inspect_checkpoints(Path(run_dir) / "checkpoints"))


def resume_point(run_dir: str | Path, dry_run: bool = False) -> ResumePoint:
    """The save a restarted trainer must load; moves dead saves above it aside unless `dry_run`."""
    checkpoints = Path(run_dir) / "checkpoints"
    verdicts = inspect_checkpoints(checkpoints)  # every file of every save read once
    found = _newest(verdicts)
    iteration, folder = found if found else (None, None)
    dead = [c for c in verdicts
            if not c.complete and not c.universal and not c.path.is_symlink()
            and (iteration is None or c.iteration > iteration)]
    moved = []
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for checkpoint in dead:
        target = checkpoints / INCOMPLETE_DIR / f"{checkpoint.path.name}.{stamp}"
        moved.append((checkpoint.path, target, checkpoint.reason))
        if not dry_run:
            target.parent.mkdir(exist_ok=True)
            os.replace(checkpoint.path, target)
    latest = _repoint_latest(checkpoints, folder, dry_run)
    return ResumePoint(iteration, folder, moved, latest)


def _repoint_latest(checkpoints: Path, folder: Path | None, dry_run: bool) -> str:
    """Make DeepSpeed's hint name the resume save (or remove it); "" when it already does or is not there."""
    path = checkpoints / DEEPSPEED_TRACKER
    try:
        current = path.read_text().strip()
    except FileNotFoundError:
        current = None
    except OSError:
        current = ""
    if folder is not None and folder.name.startswith("global_step"):
        if current == folder.name:
            return ""
        if not dry_run:
            write_atomically(path, folder.name)
        return f"latest: {current!r} -> {folder.name!r}"
    if current is None or folder is not None:  # a Megatron folder: `latest` is not its trainer's
        return ""
    if not dry_run:
        path.unlink(missing_ok=True)
    return f"latest ({current!r}) removed: no whole DeepSpeed save to name"
