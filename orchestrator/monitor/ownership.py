"""Which submissions in the queue are this campaign's: the rule behind adoption and every cancel.

Job names alone are not enough: two campaigns (a config re-run in a second folder for another data set,
two colleagues with one naming scheme) may share them, and adopting or cancelling the other campaign's
job is worse than any other mistake the monitor can make. A submission is this campaign's when
- its id is one the campaign recorded, unless the scheduler now reports that id with another name AND
  another batch script (the id was reused, e.g. by a controller reinstalled with its job ids reset;
  a template whose `--job-name` differs from the config's name still runs the job's script), or
- it is active, has the job's name AND runs the job's own batch script (same file, by real path). A
  job submitted by hand with the campaign's script is therefore adopted; another folder's is not.
An array task (`scheduler.array_driver`) is named and run by its array: the same two rules hold with its array's
name and driver script, and a task found in the queue is the job whose intent names that driver and its index.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import replace

from orchestrator.jobs import Job
from orchestrator.scheduler.array_driver import array_name_of
from orchestrator.scheduler.base import Observation, SchedulerState
from orchestrator.state.records import AttemptRecord, JobRecord


def runs_script(observation: Observation, script: str) -> bool:
    """Does the submission run `script` (resolved against the monitor's working directory)?"""
    if not observation.script:
        return False
    path = observation.script
    if not os.path.isabs(path):
        if not observation.work_dir:
            return False
        path = os.path.join(observation.work_dir, path)
    return os.path.realpath(path) == os.path.realpath(script)


def is_campaign_submission(observation: Observation, job: Job) -> bool:
    """An active submission found by name that belongs to `job` of this campaign."""
    return is_submission_of(observation, job.name, job.sbatch_script)


def is_submission_of(observation: Observation, name: str, script: str) -> bool:
    """Has the submission the job's name and does it run the job's batch script?"""
    return observation.name == name and runs_script(observation, script)


def recorded_submission_of(observation: Observation, name: str, script: str) -> Observation:
    """The observation of an id the campaign recorded for the job called `name` (batch script `script`: for an array
    task, its array's name and driver script), or GONE when that id now is another job."""
    reused = (observation.name and observation.name != name and observation.script
              and not runs_script(observation, script))
    if reused and observation.state != SchedulerState.GONE:
        return replace(observation, state=SchedulerState.GONE, exit_code=None,
                       reason=f"id reused by another job ({observation.name})")
    return observation


def submitted_as(attempt: AttemptRecord, script: str) -> tuple[str, str]:
    """The name and batch script the scheduler shows for this attempt of the job with batch script `script`: its
    array's for an array task."""
    if attempt.array_script:
        return array_name_of(attempt.array_script), attempt.array_script
    return attempt.job, script


def array_intents(records: Iterable[JobRecord]) -> dict[tuple[str, int], str]:
    """The open array-task intents without an id yet: (driver script, index) -> job name."""
    return {(r.current.array_script, r.current.array_index): r.name for r in records
            if r.current and r.current.array_script and r.current.array_index is not None and not r.current.scheduler_id}


def array_task_of(observation: Observation, intents: Mapping[tuple[str, int], str]) -> str | None:
    """The job whose array-task intent (driver script, index) this active submission fulfils, if any."""
    head, underscore, index = observation.scheduler_id.partition("_")
    if not underscore or not index.isdigit() or not head.isdigit():
        return None
    for (driver, task_index), job_name in intents.items():
        if task_index == int(index) and is_submission_of(observation, array_name_of(driver), driver):
            return job_name
    return None
