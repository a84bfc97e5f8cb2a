"""A shell command formatted with each job's values: AutoExperiment's `run --filter-cmd` and `for_each`.

AutoExperiment formats the command with `cmd.format(**job.params)` and runs it with the shell; so do
we, in job order, except that a reference to a value the job lacks is an error naming the job
(AutoExperiment stops with a KeyError traceback) and that a timeout can bound each command.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from orchestrator.errors import UserError
from orchestrator.jobs import Job
from orchestrator.process import CommandResult, CommandTimeout, run_command


def format_for_job(command: str, job: Job) -> str:
    """`command` with the job's values filled in (`{name}`, `{lr:.0e}`; `{{` for a literal brace)."""
    try:
        return command.format(**job.params)
    except KeyError as error:
        raise UserError(f"job {job.name}: the command names {{{error.args[0]}}}, which the job does not have") from None
    except (ValueError, IndexError, AttributeError, TypeError) as error:
        raise UserError(f"job {job.name}: cannot format the command {command!r}: {error}") from None


@dataclass(frozen=True)
class JobCommandResult:
    job: Job
    command: str
    result: CommandResult | None  # None: killed after the timeout

    @property
    def succeeded(self) -> bool:
        return self.result is not None and self.result.returncode == 0


def run_for_each(jobs: Sequence[Job], command: str, timeout: float | None = None) -> Iterator[JobCommandResult]:
    """Run the formatted command once per job, in job order. Every command is formatted before the first runs."""
    formatted = [(job, format_for_job(command, job)) for job in jobs]
    for job, text in formatted:
        try:
            result: CommandResult | None = run_command(text, timeout=timeout)
        except CommandTimeout:
            result = None
        yield JobCommandResult(job, text, result)


def filter_by_command(jobs: Sequence[Job], command: str, timeout: float | None = None) -> list[Job]:
    """The jobs for which the formatted command exits 0 (AutoExperiment's `--filter-cmd`)."""
    return [outcome.job for outcome in run_for_each(jobs, command, timeout) if outcome.succeeded]
