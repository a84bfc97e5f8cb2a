"""Start a cooldown branch from a pretraining checkpoint by symlinking it into the branch's own folder.

    LOGS/EXP/checkpoints/iter_0001000/          (pretraining, constant LR)
    LOGS/EXP/cooldown_s<CD_SCALE>/checkpoints/iter_0001000 -> ../../checkpoints/iter_0001000
    LOGS/EXP/cooldown_s<CD_SCALE>/checkpoints/latest_checkpointed_iteration.txt   (1000)

The cooldown trains with `--load/--save` on its own folder, so it resumes from the link on its first
start and from its own checkpoints after a restart. A tracker already pointing further (the cooldown
has saved since) is left alone, so calling this again never rolls a branch back.
"""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.campaign.checkpoints import (
    DEEPSPEED_TRACKER,
    DEFAULT_SETTLE_SECS,
    MEGATRON_TRACKER,
    complete_iterations,
    list_checkpoint_dirs,
    tracked_iteration,
)


def cooldown_dir(logs: str | Path, exp_name: str, cd_scale: str) -> Path:
    return Path(logs) / exp_name / f"cooldown_s{cd_scale}"


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)


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


def link_cooldown_checkpoint(
    logs: str, exp_name: str, iteration: int, cd_scale: str, settle_secs: float = DEFAULT_SETTLE_SECS
) -> bool:
    """Link pretraining checkpoint `iteration` into the cooldown branch; False when it is not there (yet)."""
    source_root = Path(logs) / exp_name / "checkpoints"
    iteration = int(iteration)
    source = list_checkpoint_dirs(source_root).get(iteration)
    if source is None or iteration not in complete_iterations(source_root, settle_secs):
        return False
    destination = cooldown_dir(logs, exp_name, str(cd_scale)) / "checkpoints"
    destination.mkdir(parents=True, exist_ok=True)
    _place_link(source, destination / source.name)
    current = tracked_iteration(destination)
    if current is None or current < iteration:
        if source.name.startswith("global_step"):
            _write_atomically(destination / DEEPSPEED_TRACKER, f"global_step{iteration}")
        else:
            _write_atomically(destination / MEGATRON_TRACKER, f"{iteration}\n")
    return True
