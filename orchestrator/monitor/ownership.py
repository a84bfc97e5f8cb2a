"""Which submissions in the queue are this campaign's: the rule behind adoption and every cancel.

Job names alone are not enough: two campaigns (a config re-run in a second folder for another data set,
two colleagues with one naming scheme) may share them, and adopting or cancelling the other campaign's
job is worse than any other mistake the monitor can make. A submission is this campaign's when
- its id is one the campaign recorded, unless the scheduler now reports that id with another name AND
  another batch script (the id was reused, e.g. by a controller reinstalled with its job ids reset;
  a template whose `--job-name` differs from the config's name still runs the job's script), or
- it is active, has the job's name AND runs the job's own batch script (same file, by real path). A
  job submitted by hand with the campaign's script is therefore adopted; another folder's is not.
"""

from __future__ import annotations

import os
from dataclasses import replace

from orchestrator.jobs import Job
from orchestrator.scheduler.base import Observation, SchedulerState


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


def recorded_submission(observation: Observation, job: Job) -> Observation:
    """The observation of an id the campaign recorded, or GONE when that id now is another job."""
    return recorded_submission_of(observation, job.name, job.sbatch_script)


def recorded_submission_of(observation: Observation, name: str, script: str) -> Observation:
    """`recorded_submission` for the job called `name` with batch script `script`."""
    reused = (observation.name and observation.name != name and observation.script
              and not runs_script(observation, script))
    if reused and observation.state != SchedulerState.GONE:
        return replace(observation, state=SchedulerState.GONE, exit_code=None,
                       reason=f"id reused by another job ({observation.name})")
    return observation
