"""How a run ended as far as its checkpoints go, from Megatron's own lines in its output (`probes.SaveMarks`).

A segment that met its time limit gracefully (Slurm's `--signal` before the limit, Megatron's
`--exit-signal-handler` or `--exit-duration-in-mins`) saved and then printed why it exits; one that the limit
killed while it saved printed `saving checkpoint at iteration N` and never `successfully saved ... N`: that save is
incomplete, and the next attempt must resume from the last whole one (`orch ckpt resume`). Pure: the monitor's
decision (`lifecycle`) puts the answer into the attempt's ending.
"""

from __future__ import annotations

from orchestrator.monitor.probes import SaveMarks

SAVED_AND_EXITED = "saved iteration {iteration}, then {reason}"
KILLED_MID_SAVE = "killed while saving iteration {iteration}: that save is incomplete"


def save_ending(saves: SaveMarks, run_offset: int) -> str:
    """'' when the run's own output (from `run_offset` on) says nothing about saving or exiting on purpose."""
    started = saves.started_at >= run_offset
    finished = saves.finished_at >= run_offset
    if started and (not finished or saves.finished_at < saves.started_at):
        before = f" (the run's last whole save: iteration {saves.finished})" if finished else ""
        return KILLED_MID_SAVE.format(iteration=saves.started) + before
    if finished and saves.exit_at > saves.finished_at:
        return SAVED_AND_EXITED.format(iteration=saves.finished, reason=saves.exit_reason)
    return ""
