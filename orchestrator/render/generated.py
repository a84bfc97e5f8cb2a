"""Per-job files that `orch build` writes beside the scripts, and the template variables naming them.

A generated file belongs to a job whose config has its trigger key (e.g. `data_mix`); the job's
template refers to it by a variable (e.g. `{DATA_MIX_FILE}`), which defaults to the job's script path
with another suffix and may be set in the config instead. The config engine knows nothing of these:
the variables are added when a script is rendered, the files written when the campaign is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.jobs import Job
from orchestrator.planning import data_mix


@dataclass(frozen=True)
class GeneratedFile:
    trigger: str  # the config key that asks for the file
    variable: str  # the template variable holding its path
    suffix: str  # default path: the job's script path with this suffix
    # Checks the job's inputs (raising UserError) and returns what writes the file to a path.
    prepare: Callable[[Job], Callable[[str], None]]

    def path(self, params: Mapping[str, Any], sbatch_script: str) -> str:
        chosen = params.get(self.variable)
        return str(chosen) if chosen else str(Path(sbatch_script).with_suffix("")) + self.suffix


def _prepare_mixture(job: Job) -> Callable[[str], None]:
    mixture = data_mix.job_mixture_inputs(job.name, job.params)  # every rule checked before any file is written
    return lambda path: data_mix.write_job_mixture(mixture, path)


GENERATED_FILES: list[GeneratedFile] = [
    GeneratedFile("data_mix", data_mix.DATA_MIX_VARIABLE, ".data_mix.txt", _prepare_mixture),
]


def _wanted(job: Job) -> list[GeneratedFile]:
    return [generated for generated in GENERATED_FILES if job.params.get(generated.trigger) is not None]


def template_variables(job: Job) -> dict[str, Any]:
    """The job's parameters plus the path variable of each file generated for it."""
    wanted = _wanted(job)
    if not wanted:
        return job.params
    params = dict(job.params)
    for generated in wanted:
        params[generated.variable] = generated.path(job.params, job.sbatch_script)
    return params


def write_generated_files(jobs: Sequence[Job]) -> int:
    """Write every job's generated files; all are checked before the first is written. Returns how many."""
    planned = [
        (generated.path(job.params, job.sbatch_script), generated.prepare(job)) for job in jobs for generated in _wanted(job)
    ]
    for path, write in planned:
        write(path)
    return len(planned)


def generated_paths(jobs: Sequence[Job]) -> set[str]:
    """The (normalised) paths of every file `orch build` generates for these jobs."""
    import os

    return {os.path.normpath(generated.path(job.params, job.sbatch_script)) for job in jobs for generated in _wanted(job)}
