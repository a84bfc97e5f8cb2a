"""Did the node fail the attempt, rather than the job itself? Pure: the decision (`lifecycle`) asks, the effects mark
the attempt's nodes bad (`state.bad_nodes`) and later submissions exclude them."""

from __future__ import annotations

from orchestrator.monitor.probes import OutputFacts
from orchestrator.scheduler.base import Observation, SchedulerState


def node_fault(observation: Observation, output: OutputFacts, run_offset: int) -> str:
    """Why the attempt's nodes are to blame ('' when nothing says so): Slurm ended it NODE_FAIL, or its own output
    (this run's, from `run_offset` on) matched `node_fault_regex`."""
    if observation.state == SchedulerState.NODE_FAIL:
        return "ended NODE_FAIL"
    if output.fault_at >= run_offset and output.fault_line:
        return f"node fault in its output: {output.fault_line!r}"
    return ""
