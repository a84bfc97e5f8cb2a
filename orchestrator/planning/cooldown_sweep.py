"""A cooldown sweep: one runnable script per milestone, from its exact step and its rollback step.

For every milestone ID the sweep writes `cooldown_id<ID>_exact.sh` (resume at steps_mod) and, when
steps_rollback > 0, `cooldown_id<ID>_rollback.sh` (resume at steps_rollback); each holds one
command block of `cooldown_cmds` with a cooldown of `cool_r` steps. IDs up to `phase_split` train
on the phase-1 data list, later IDs on the phase-2 list. The milestone table is saved next to them
as `checkpoints.tsv`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import UserError
from orchestrator.planning import write_atomically
from orchestrator.planning.cooldown_cmds import CommandOptions, CooldownRun, render_block, render_script
from orchestrator.planning.milestones import Milestone, format_table

DEFAULT_PHASE_SPLIT = 4
TABLE_NAME = "checkpoints.tsv"


@dataclass(frozen=True)
class SweepScript:
    path: Path
    run: CooldownRun
    kind: str
    """'exact' or 'rollback'."""
    data_file_list: str


def plan_sweep(
    milestones: Sequence[Milestone],
    cool_r: int,
    emit_dir: str | os.PathLike[str],
    phase1_list: str,
    phase2_list: str,
    phase_split: int = DEFAULT_PHASE_SPLIT,
) -> list[SweepScript]:
    """Which scripts the sweep writes, without writing them."""
    if cool_r <= 0:
        raise UserError(f"--cool-R: must be a positive integer, got {cool_r}")
    directory = Path(emit_dir)
    scripts: list[SweepScript] = []
    for milestone in milestones:
        data_list = phase1_list if milestone.id <= phase_split else phase2_list
        steps = {"exact": milestone.steps_mod, "rollback": milestone.steps_rollback}
        for kind, resume in steps.items():
            if resume <= 0:  # the cooldown is longer than the run up to this milestone
                continue
            scripts.append(
                SweepScript(
                    path=directory / f"cooldown_id{milestone.id}_{kind}.sh",
                    run=CooldownRun(id=milestone.id, resume_step=resume, cooldown_steps=cool_r),
                    kind=kind,
                    data_file_list=data_list,
                )
            )
    return scripts


def write_sweep(
    milestones: Sequence[Milestone],
    cool_r: int,
    emit_dir: str | os.PathLike[str],
    phase1_list: str,
    phase2_list: str,
    options: CommandOptions,
    phase_split: int = DEFAULT_PHASE_SPLIT,
) -> list[SweepScript]:
    """Write every script (executable) and the milestone table into `emit_dir`; return the scripts.

    `options.data_file_list` is replaced per script by the phase's list.
    """
    scripts = plan_sweep(milestones, cool_r, emit_dir, phase1_list, phase2_list, phase_split)
    # Render everything first: a bad option fails before any file is written.
    texts = [
        render_script([render_block(script.run, dataclasses.replace(options, data_file_list=script.data_file_list))])
        for script in scripts
    ]
    write_atomically(Path(emit_dir) / TABLE_NAME, format_table(milestones))
    for script, text in zip(scripts, texts):
        write_atomically(script.path, text, executable=True)
    return scripts
