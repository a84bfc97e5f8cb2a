"""Builders of on-disk checkpoint layouts shared by the tests/test_campaign_*.py files."""

from __future__ import annotations

import os
import time
from pathlib import Path

OLD = 3600.0  # seconds: well past any settle time


def age(path: Path, seconds: float) -> None:
    """Set the mtime of `path` and everything under it to `seconds` ago."""
    stamp = time.time() - seconds
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.utime(os.path.join(root, name), (stamp, stamp))
    os.utime(path, (stamp, stamp))


def make_checkpoint(checkpoints: Path, iteration: int, fmt: str = "torch", age_secs: float = OLD) -> Path:
    """One checkpoint folder in a given format, `age_secs` old."""
    if fmt == "deepspeed":
        folder = checkpoints / f"global_step{iteration}"
        files = ["mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt"]
    else:
        folder = checkpoints / f"iter_{iteration:07d}"
        files = {
            "torch": ["mp_rank_00/model_optim_rng.pt", "mp_rank_01/model_optim_rng.pt"],
            "torch_tp_pp": ["mp_rank_00_000/model_optim_rng.pt"],
            "torch_dist": ["__0_0.distcp", ".metadata", "common.pt"],
            "torch_dist_json": ["metadata.json", "__0_1.distcp"],
            "npz": ["mp_rank_00/model_optim_rng.npz"],
            "partial": ["mp_rank_00/distrib_optim.pt"],  # rank-0 model file not written yet
        }[fmt]
    for name in files:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 16)
    age(folder, age_secs)
    return folder


def write_tracker(checkpoints: Path, iteration: int, deepspeed: bool = False) -> None:
    checkpoints.mkdir(parents=True, exist_ok=True)
    if deepspeed:
        (checkpoints / "latest").write_text(f"global_step{iteration}")
    else:
        (checkpoints / "latest_checkpointed_iteration.txt").write_text(f"{iteration}\n")
