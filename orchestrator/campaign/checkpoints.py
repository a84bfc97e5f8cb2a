"""Find the complete checkpoints of a run and the ones still waiting for conversion.

Layouts (both may appear in one `RUN_DIR/checkpoints/`):

- Megatron-LM: `iter_0000100/` (7-digit padding) plus `latest_checkpointed_iteration.txt` holding `100`;
- Megatron-DeepSpeed: `global_step100/` plus a `latest` file holding `global_step100`.

A checkpoint is complete when its rank-0 files exist in one of the known formats and nothing in it
changed for `settle_secs` (a writer still busy keeps touching files). The iteration a tracker file names,
and every earlier one, is finished whatever its age: trainers write the tracker only after the save.

Conversion bookkeeping lives next to the checkpoints:
`RUN_DIR/converted_checkpoints/iter_<N>.done` (converted) and `RUN_DIR/in_progress_checkpoints/iter_<N>.lock`.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SETTLE_SECS = 60.0
MEGATRON_TRACKER = "latest_checkpointed_iteration.txt"
DEEPSPEED_TRACKER = "latest"

_ITER_DIR = re.compile(r"iter_(\d+)\Z")
_GLOBAL_STEP_DIR = re.compile(r"global_step(\d+)\Z")
_MEGATRON_TRACKED = re.compile(r"(\d+)\Z")  # `release` (a converted release checkpoint) is no iteration
_DEEPSPEED_TRACKED = re.compile(r"global_step(\d+)\Z")
# Rank-0 folders of Megatron-LM's torch format: tp rank, pp rank, expert/dp suffixes.
_RANK0_DIR = re.compile(r"mp_rank_00(?:_\d{3})?(?:_\d{3})?(?:_dp_\d{3})?\Z")
_RANK0_FILES = ("model_optim_rng.pt", "model_optim_rng.npz")  # torch format; the tinylm example's numpy twin
_DEEPSPEED_RANK0_FILE = "mp_rank_00_model_states.pt"
_TORCH_DIST_MARKERS = (".metadata", "metadata.json")


@dataclass(frozen=True)
class RunLayout:
    """The directories of one run (pretrain or a cooldown branch) under its RUN_DIR."""

    run_dir: Path

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def converted(self) -> Path:
        return self.run_dir / "converted_checkpoints"

    @property
    def in_progress(self) -> Path:
        return self.run_dir / "in_progress_checkpoints"

    def done_marker(self, iteration: int) -> Path:
        return self.converted / f"iter_{iteration}.done"

    def lock_file(self, iteration: int) -> Path:
        return self.in_progress / f"iter_{iteration}.lock"


def iteration_dir_name(iteration: int, deepspeed: bool = False) -> str:
    return f"global_step{iteration}" if deepspeed else f"iter_{iteration:07d}"


def list_checkpoint_dirs(checkpoints: Path) -> dict[int, Path]:
    """Iteration -> its folder, for every `iter_*` / `global_step*` entry (symlinks included)."""
    found: dict[int, Path] = {}
    try:
        entries = list(os.scandir(checkpoints))
    except (FileNotFoundError, NotADirectoryError):
        return found
    for entry in entries:
        match = _ITER_DIR.match(entry.name) or _GLOBAL_STEP_DIR.match(entry.name)
        if match and entry.is_dir():  # follows symlinks: a cooldown's linked checkpoint counts
            found.setdefault(int(match.group(1)), Path(entry.path))
    return found


def tracked_iteration(checkpoints: Path) -> int | None:
    """The iteration named by the Megatron-LM or DeepSpeed tracker file, if any (the larger of both)."""
    values: list[int] = []
    for name, pattern in ((MEGATRON_TRACKER, _MEGATRON_TRACKED), (DEEPSPEED_TRACKER, _DEEPSPEED_TRACKED)):
        try:
            text = (checkpoints / name).read_text().strip()
        except OSError:
            continue
        match = pattern.match(text)
        if match:
            values.append(int(match.group(1)))
    return max(values) if values else None


def has_rank0_files(path: Path) -> bool:
    """Whether the folder holds a checkpoint in a known format (not yet whether it is finished)."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        return False
    names = {entry.name for entry in entries}
    if _DEEPSPEED_RANK0_FILE in names:
        return True
    if any(marker in names for marker in _TORCH_DIST_MARKERS) or any(name.endswith(".distcp") for name in names):
        return True
    for entry in entries:
        if _RANK0_DIR.match(entry.name) and entry.is_dir():
            if any((Path(entry.path) / file).is_file() for file in _RANK0_FILES):
                return True
    return False


def newest_mtime(path: Path) -> float:
    """Latest modification time of the folder and anything inside it (0 when unreadable)."""
    newest = 0.0
    for root, dirs, files in os.walk(path):
        for name in (root, *(os.path.join(root, f) for f in files)):
            try:
                newest = max(newest, os.stat(name).st_mtime)
            except OSError:
                continue
    return newest


def complete_iterations(
    checkpoints: Path, settle_secs: float = DEFAULT_SETTLE_SECS, now: float | None = None
) -> list[int]:
    """Sorted iterations whose checkpoint is complete and no longer being written."""
    now = time.time() if now is None else now
    tracked = tracked_iteration(checkpoints)
    complete = []
    for iteration, path in sorted(list_checkpoint_dirs(checkpoints).items()):
        if not has_rank0_files(path):
            continue
        finished = tracked is not None and iteration <= tracked
        if finished or now - newest_mtime(path) >= settle_secs:
            complete.append(iteration)
    return complete

