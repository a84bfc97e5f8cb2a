"""Megatron-like checkpoint layout, written atomically.

    DIR/iter_0000100/mp_rank_00/model_optim_rng.npz
    DIR/latest_checkpointed_iteration.txt          (just the iteration number, like Megatron's tracker)

The iteration folder is built under a hidden temporary name and renamed into place, and the tracker is
replaced only after that, so a reader never sees a half-written checkpoint (a `find -name 'iter_*'`
does not match the `.iter_*` temporary).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

TRACKER = "latest_checkpointed_iteration.txt"
RANK_DIR = "mp_rank_00"
FILE_NAME = "model_optim_rng.npz"


class CheckpointError(Exception):
    """A checkpoint that should exist is missing or unreadable."""


def iteration_dir(root: Path, iteration: int) -> Path:
    return root / f"iter_{iteration:07d}"


def checkpoint_file(root: Path, iteration: int) -> Path:
    return iteration_dir(root, iteration) / RANK_DIR / FILE_NAME


def read_tracker(root: Path) -> int | None:
    """The latest complete iteration in `root`, or None when no checkpoint was ever saved there."""
    tracker = root / TRACKER
    if not tracker.is_file():
        return None
    text = tracker.read_text().strip()
    if not text.isdigit():
        raise CheckpointError(f"{tracker}: expected an iteration number, found {text!r}")
    return int(text)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(root: Path, iteration: int, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Write one checkpoint and then point the tracker at it. `meta` is stored as JSON inside the .npz."""
    root.mkdir(parents=True, exist_ok=True)
    final = iteration_dir(root, iteration)
    staging = root / f".{final.name}.tmp.{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    (staging / RANK_DIR).mkdir(parents=True)
    with open(staging / RANK_DIR / FILE_NAME, "wb") as handle:
        np.savez(handle, **arrays, meta=np.array(json.dumps(meta, sort_keys=True)))
        handle.flush()
        os.fsync(handle.fileno())
    if final.is_symlink() or final.exists():
        # overwrite an older checkpoint of the same iteration; a symlink (cooldown branch) is only unlinked,
        # never followed, so the pretraining checkpoint it points to stays intact
        retired = root / f".{final.name}.old.{os.getpid()}"
        os.replace(final, retired)
        os.replace(staging, final)
        if retired.is_symlink():
            retired.unlink()
        else:
            shutil.rmtree(retired)
    else:
        os.replace(staging, final)
    _fsync_dir(root)
    tracker_tmp = root / f".{TRACKER}.tmp.{os.getpid()}"
    tracker_tmp.write_text(f"{iteration}\n")
    os.replace(tracker_tmp, root / TRACKER)
    _fsync_dir(root)
    return final


def load(root: Path, iteration: int) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, meta) of one checkpoint; follows a symlinked iteration folder."""
    path = checkpoint_file(root, iteration)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint of iteration {iteration} in {root}: {path} does not exist")
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files if name != "meta"}
        meta = json.loads(str(data["meta"]))
    return arrays, meta
