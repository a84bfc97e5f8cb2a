"""Start a cooldown branch from a pretraining checkpoint by symlinking it into the branch's own folder.

    LOGS/EXP/checkpoints/iter_0001000/          (pretraining, constant LR)
    LOGS/EXP/cooldown_s<CD_SCALE>/checkpoints/iter_0001000 -> ../../checkpoints/iter_0001000
    LOGS/EXP/cooldown_s<CD_SCALE>/checkpoints/latest_checkpointed_iteration.txt   (1000)

The cooldown trains with `--load/--save` on its own folder, so it resumes from the link on its first
start and from its own checkpoints after a restart. A tracker already pointing further (the cooldown
has saved since) is left alone, so calling this again never rolls a branch back. Only a complete checkpoint
(`campaign.checkpoints`: at or below its tracker, every rank's files present) is ever linked, in any layout
that module counts. `link_checkpoint` links between any two runs (a CPT stage from the previous stage).
"""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.campaign.checkpoints import (
    DEEPSPEED_TRACKER,
    MEGATRON_TRACKER,
    UNIVERSAL_TRACKER,
    inspect_checkpoints,
    trackers,
)
from orchestrator.files import write_atomically


def cooldown_dir(logs: str | Path, exp_name: str, cd_scale: str) -> Path:
    return Path(logs) / exp_name / f"cooldown_s{cd_scale}"


def _place_link(source: Path, link: Path) -> None:
    """Make `link` point at `source`; a real folder already there (the branch's own save) is kept."""
    target = os.path.relpath(source.resolve(), link.parent.resolve())
    if link.is_symlink():
        if os.readlink(link) == target or link.resolve() == source.resolve():
            return
        link.unlink()
    elif link.exists():
        return
    temporary = link.with_name(f".{link.name}.link.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    os.symlink(target, temporary)
    os.replace(temporary, link)  # atomic: a concurrent caller never sees a half-made link


def link_checkpoint(source_checkpoints: str | Path, destination_checkpoints: str | Path, iteration: int) -> bool:
    """Link the complete checkpoint `iteration` of one run into another run's checkpoints folder.

    The destination gets the same kinds of tracker the source has (Megatron's, DeepSpeed's `latest`,
    `latest_universal` for a universal checkpoint), each pointing at the linked iteration unless it already
    points further. False (nothing touched) when the checkpoint is missing or not complete.
    """
    source_root = Path(source_checkpoints)
    iteration = int(iteration)
    candidates = [c for c in inspect_checkpoints(source_root) if c.iteration == iteration and c.complete]
    if not candidates:
        return False
    destination = Path(destination_checkpoints)
    destination.mkdir(parents=True, exist_ok=True)
    source_trackers = trackers(source_root)
    for checkpoint in candidates:
        _place_link(checkpoint.path, destination / checkpoint.path.name)
        if checkpoint.universal:
            _advance_tracker(destination, UNIVERSAL_TRACKER, iteration, checkpoint.path.name)
            continue
        if checkpoint.path.name.startswith("global_step"):
            _advance_tracker(destination, DEEPSPEED_TRACKER, iteration, checkpoint.path.name)
        if MEGATRON_TRACKER in source_trackers or not checkpoint.path.name.startswith("global_step"):
            _advance_tracker(destination, MEGATRON_TRACKER, iteration, f"{iteration}\n")
    return True


def _advance_tracker(checkpoints: Path, name: str, iteration: int, text: str) -> None:
    current = trackers(checkpoints).get(name)
    if current is None or current < iteration:
        write_atomically(checkpoints / name, text)


def link_cooldown_checkpoint(logs: str, exp_name: str, iteration: int, cd_scale: str) -> bool:
    """Link pretraining checkpoint `iteration` into the cooldown branch; False when it is not there (yet)."""
    return link_checkpoint(Path(logs) / exp_name / "checkpoints",
                           cooldown_dir(logs, exp_name, str(cd_scale)) / "checkpoints", iteration)
