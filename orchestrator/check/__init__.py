"""`orch check`: what would fail in the queue, found before anything is written or submitted.

Per job: every flag of its Megatron command exists in the pinned parser and takes an allowed value
(`check.flags`), and the data and checkpoints it reads exist or are made by the campaign
(`check.data_paths`). `orch build` and `orch run` run the same checks first (`--no-check` skips them).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from orchestrator.check import data_paths, flags
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
        for invocation in invocations:
            for problem in flags.check_arguments(invocation.arguments, schemas[framework]):
                problems.append(f"job {job.name}: {problem} [{schemas[framework].label}, script line {invocation.line}]")
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


def raise_on_problems(problems: Sequence[str]) -> None:
    """A UserError listing the problems (the first SHOWN_PROBLEMS), or nothing."""
    if not problems:
        return
    shown = list(problems[:SHOWN_PROBLEMS])
    more = f"\n... and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
    raise UserError(f"orch check: {len(problems)} problem(s), nothing written or submitted:\n" + "\n".join(shown) + more)
