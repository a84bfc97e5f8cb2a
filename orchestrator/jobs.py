"""A fully resolved job: what config expansion produces and everything downstream consumes.

Config expansion (orchestrator.config) turns one YAML file into a list of `Job`s; rendering turns a
`Job` into its sbatch script; the monitor submits and watches `Job`s. The field names and defaults are
AutoExperiment's (its `JobDef`), so configs written for it mean the same here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Keys with a meaning to orch itself; every other key is only a template variable.
SPECIAL_KEYS: frozenset[str] = frozenset(
    {
        "name",
        "template",
        "sbatch_script",
        "output_file",
        "cmd",
        "check_interval_secs",
        "start_condition_cmd",
        "termination_str",
        "termination_cmd",
        # orch's own additions (optional):
        "freeze_secs",
        "max_failures",
        "probe_timeout_secs",
        "progress_regex",
        "fail_regex",
        "node_fault_regex",
        "prequeue",
        "job_array",
    }
)

DEFAULT_CHECK_INTERVAL_SECS = 60 * 15
DEFAULT_MAX_FAILURES = 3
DEFAULT_PROBE_TIMEOUT_SECS = 300.0
# A running job silent for this long is frozen unless `freeze_secs` says otherwise. Healthy training jobs are
# silent for long stretches: Megatron building its dataset index maps or saving a large checkpoint to a parallel
# file system, DeepSpeed JIT-compiling its ops at first start, every rank waiting in torch.distributed's
# rendezvous or a collective (its default timeout is 10-30 minutes, after which the job crashes by itself and
# the monitor sees it end). One hour lets all of those finish; AutoExperiment's rule (one check interval) is
# `freeze_secs: "{check_interval_secs}"`.
DEFAULT_FREEZE_SECS = 3600.0
# `orch plan` warns about a freeze window shorter than this: shorter ones cancel healthy silent phases.
MIN_SENSIBLE_FREEZE_SECS = 600.0
# Without `progress_regex`, how the monitor tells that an attempt which ended cleanly without its termination
# rule made progress: a new Megatron-style `iteration N` value (Megatron-LM, Megatron-DeepSpeed, tinylm).
DEFAULT_PROGRESS_MARK = r"\biteration\s+(\d+)"
# Output that means the node failed the job, not the job itself: the attempt's nodes are excluded from later
# submissions (state.bad_nodes). NCCL's system and remote errors (a NIC or a peer gone), the interconnect's
# "Communication connection failure" (as oellm-autoexp's Leonardo config catches it), ECC errors, a GPU lost from
# the bus, and a device that is missing or held by a stale process. Set `node_fault_regex: ""` to turn it off.
DEFAULT_NODE_FAULT_REGEX = (r"ncclSystemError|ncclRemoteError|NCCL error.*(?:unhandled system error|remote process exited)"
                            r"|Communication connection failure|ECC error|GPU has fallen off the bus"
                            r"|CUDA-capable device\(s\) (?:is|are) busy or unavailable|no CUDA-capable device is detected")
# `prequeue`: when the next segment of a time-limited job waits in the queue behind the running one
# (`sbatch --dependency=afterany:ID`) instead of being submitted once the monitor sees the run end.
PREQUEUE_OFF = "off"
PREQUEUE_AUTO = "auto"  # when the run's own log says it cannot finish before its time limit
PREQUEUE_ALWAYS = "always"  # as soon as a segment is in the queue (a job declared to need many)
PREQUEUE_MODES = (PREQUEUE_OFF, PREQUEUE_AUTO, PREQUEUE_ALWAYS)
# `job_array`: jobs that share a template's resources and are ready in the same monitor cycle go to Slurm as one
# `sbatch --array`, once at least this many are ready (`auto`; `always` is 2, a number sets its own threshold).
# Eight: below it an array saves the scheduler little, and a campaign's handful of reruns stay plain jobs.
JOB_ARRAY_AUTO_MIN_TASKS = 8


@dataclass(frozen=True)
class Job:
    name: str
    """Unique in the campaign; also the Slurm job name the monitor re-adopts jobs by."""
    template: str
    """Path of the template the script is rendered from (`.j2` = Jinja2, else str.format)."""
    sbatch_script: str
    """Path the rendered script is written to (relative to the working directory)."""
    output_file: str
    """The job's log; watched for freezes and for `termination_str`."""
    cmd: str
    """Shell command that submits the script, e.g. `sbatch {sbatch_script}`."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """Every resolved variable of the job, special keys included (what templates see)."""
    check_interval_secs: float = DEFAULT_CHECK_INTERVAL_SECS
    start_condition_cmd: str = ""
    """Shell command; the job may start only when it prints `1`. Empty: start at once."""
    termination_str: str = ""
    """Regex searched in `output_file`; a match means the job is done."""
    termination_cmd: str = ""
    """Shell command; printing `1` means the job is done."""
    freeze_secs: float | None = None
    """A running job whose output did not change for this long is frozen (default: the larger of
    DEFAULT_FREEZE_SECS and check_interval_secs)."""
    max_failures: int = DEFAULT_MAX_FAILURES
    """Consecutive failed attempts (crashes, freezes, `fail_regex` matches) after which the job is given up."""
    probe_timeout_secs: float = DEFAULT_PROBE_TIMEOUT_SECS
    """A start or termination command running longer is killed and taken as "no"."""
    progress_regex: str = ""
    """Regex for a progress line (e.g. `iteration\\s+(\\d+)`): once it matched in a run, only a new value
    (its first group, else the whole match) counts as life for the freeze rule."""
    fail_regex: str = ""
    """Regex for output that means the run is lost (e.g. `lm loss: nan`): the job is cancelled, a failure."""
    node_fault_regex: str = DEFAULT_NODE_FAULT_REGEX
    """Regex for output that blames the node (DEFAULT_NODE_FAULT_REGEX): the attempt's nodes are marked bad."""
    prequeue: str = PREQUEUE_OFF
    """Queue the next segment behind the running one: PREQUEUE_OFF, PREQUEUE_AUTO or PREQUEUE_ALWAYS."""
    array_min_tasks: int = 0
    """`job_array`: submit with others of its kind as one Slurm array once this many are ready; 0: never."""

    @property
    def effective_freeze_secs(self) -> float:
        return self.freeze_secs if self.freeze_secs is not None else max(DEFAULT_FREEZE_SECS, self.check_interval_secs)

    @property
    def progress_mark_regex(self) -> str:
        """What counts as progress between two attempts (see DEFAULT_PROGRESS_MARK)."""
        return self.progress_regex or DEFAULT_PROGRESS_MARK
