"""`orch check`: what would fail in the queue, found before anything is written or submitted.

Per job: every flag of its Megatron command exists in the pinned parser and takes an allowed value
(`check.flags`), its parallel layout and batch sizes pass Megatron's start-up arithmetic at the job's GPU
count (`check.parallelism`), and the data and checkpoints it reads exist or are made by the campaign
(`check.data_paths`). `orch build` and `orch run` run the same checks first (`--no-check` skips them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from orchestrator.check import data_paths, flags, parallelism
from orchestrator.errors import UserError
from orchestrator.jobs import Job

FRAMEWORK_KEY = "MEGATRON_FRAMEWORK"  # a job parameter choosing the parser its command is checked against
RUN_DIR_KEY = "RUN_DIR"
SHOWN_PROBLEMS = 20


@dataclass(frozen=True)
class CheckOptions:
    framework: str = "megatron-lm"
    version: str | None = None
    schema_path: str | None = None
    entries: tuple[str, ...] = flags.DEFAULT_ENTRIES
    prefix_keys: tuple[str, ...] = data_paths.DEFAULT_PREFIX_KEYS
    list_keys: tuple[str, ...] = data_paths.DEFAULT_LIST_KEYS
    data: bool = True
    generated: set[str] = field(default_factory=set)
    """Files the campaign writes itself (data mixtures): not required to exist yet."""


def check_campaign(rendered: Sequence[tuple[Job, str]], options: CheckOptions = CheckOptions()) -> list[str]:
    """One line per problem, `job NAME: ...`, in job order."""
    data_paths.clear_cache()  # files may have appeared since an earlier check in this process
    schemas: dict[str, flags.FlagSchema] = {}
    problems: list[str] = []
    consumers: list[tuple[str, str]] = []
    producers: set[str] = set()
    for job, script in rendered:
        framework = str(job.params.get(FRAMEWORK_KEY) or options.framework)
        invocations = flags.megatron_invocations(script, options.entries)
        if invocations and framework not in schemas:
            schemas[framework] = flags.load_schema(framework, options.version,
                                                   options.schema_path if framework == options.framework else None)
        world_size = _world_size(job, script) if invocations else 0
        for invocation in invocations:
            for problem in flags.check_arguments(invocation.arguments, schemas[framework]):
                problems.append(f"job {job.name}: {problem} [{schemas[framework].label}, script line {invocation.line}]")
            if world_size:
                for problem in parallelism.parallelism_problems(invocation.arguments, world_size):
                    problems.append(f"job {job.name}: at {world_size} GPUs, {problem} [Megatron's start-up checks, "
                                    f"script line {invocation.line}]")
        if not options.data:
            continue
        for problem in data_paths.job_data_problems(job.params, [i.arguments for i in invocations], options.generated,
                                                    options.prefix_keys, options.list_keys):
            problems.append(f"job {job.name}: {problem}")
        run_dir = job.params.get(RUN_DIR_KEY)
        if run_dir:
            if data_paths.consumes_checkpoints(script):
                consumers.append((job.name, str(run_dir)))
            else:
                producers.add(os.path.normpath(str(run_dir)))
    if options.data:
        problems += [f"job {name}: {problem}" for name, problem in data_paths.checkpoint_source_problems(consumers, producers)]
    return problems


def _world_size(job: Job, script: str) -> int:
    """The job's GPUs (one Megatron rank each), from its #SBATCH lines; 0 when it asks for none it names."""
    from orchestrator.accounting.estimate import estimate_job

    try:
        return estimate_job(job, script).gpus
    except ValueError:
        return 0


def grouped(problems: Sequence[str]) -> list[str]:
    """One line per cause: problems that say the same of several jobs become one line with the count and a job."""
    causes: dict[str, list[tuple[str, str]]] = {}
    for problem in problems:
        head, separator, cause = problem.partition(": ")
        job = head.removeprefix("job ") if separator and head.startswith("job ") else ""
        text = cause if job else problem
        # Where it was found ("[..., script line N]") differs between templates, not the cause.
        causes.setdefault(re.sub(r" \[[^\]]*\]$", "", text), []).append((job, text))
    lines = []
    for found in causes.values():
        job, text = found[0]
        if len(found) == 1:
            lines.append(f"job {job}: {text}" if job else text)
        else:
            lines.append(f"{len(found)} jobs (e.g. {job}): {text}")
    return lines


HOW_TO_PROCEED = ("fix the config or the data, or pass --no-check to build and run anyway (it skips the flag, "
                  "parallelism, data and checkpoint-source checks)")


def raise_on_problems(problems: Sequence[str]) -> None:
    """A UserError listing the problems by cause (the first SHOWN_PROBLEMS causes), or nothing."""
    if not problems:
        return
    causes = grouped(problems)
    shown = list(causes[:SHOWN_PROBLEMS])
    more = f"\n... and {len(causes) - SHOWN_PROBLEMS} more cause(s)" if len(causes) > SHOWN_PROBLEMS else ""
    raise UserError(f"orch check: {len(problems)} problem(s) from {len(causes)} cause(s), nothing written or "
                    "submitted:\n" + "\n".join(shown) + more + f"\nhow to proceed: {HOW_TO_PROCEED}")
