"""Job arrays, the side effects: this cycle's ready jobs of one kind submitted as one `sbatch --array`.

A job with `job_array` whose decision is a plain submission is held until every job of the cycle has been decided
(`_defer_to_array`). Then the held ones are grouped by what an array's tasks must share (`scheduler.array_driver`);
a group of at least the job's threshold goes to Slurm as arrays of at most the cluster's task cap, the rest one by
one as before. Exactly once, as for a plain submission: each task's intent names the driver script and its index and
is durable before sbatch runs, so a monitor killed in between adopts `<array id>_<index>` from the queue instead of
submitting again. After that each task is a job like any other: watched, cancelled and resubmitted on its own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from orchestrator.files import write_atomically
from orchestrator.job_state import JobState
from orchestrator.jobs import Job
from orchestrator.monitor.actions import Submit
from orchestrator.monitor.options import MonitorOptions, QueueLimit
from orchestrator.monitor.probes import OutputFacts, make_output_dir, new_run_offset, resolve_output_path
from orchestrator.scheduler import array_driver
from orchestrator.scheduler.base import Scheduler, SchedulerUnavailable, SubmitError, SubmitLimited
from orchestrator.state.store import StateConflict, StateStore

ARRAYS_DIR = "arrays"
"""Driver scripts live in the campaign's state folder: written once, read by Slurm when each task starts."""


@dataclass(frozen=True)
class HeldSubmit:
    """A submission decided this cycle and held for an array."""

    job: Job
    state: JobState
    action: Submit
    output: OutputFacts


class ArrayEffects:
    """Holds this cycle's array-able submissions and carries them out together (mixed into `Effects`)."""

    scheduler: Scheduler
    store: StateStore
    options: MonitorOptions
    _clock: Callable[[], float]
    _queue_limit: QueueLimit | None
    _committed_gpu_hours: float
    _stop: threading.Event

    _held: list[HeldSubmit]
    _array_refused: dict[str, str]
    """Per job, why it is never an array task (logged once): its script or cmd, or an array sbatch refused."""

    def _defer_to_array(self, held: HeldSubmit) -> bool:
        """Hold a submission for this cycle's arrays; False when it is made on its own now."""
        job = held.job
        if not job.array_min_tasks or job.name in self._array_refused or self._queue_limit is not None:
            return False  # at a queue limit, plain submissions probe it one job at a time
        if not callable(getattr(self.scheduler, "submit_array", None)) or not hasattr(self.scheduler, "array_command"):
            self._refuse_array(job, f"the {self.scheduler.name} scheduler has no job arrays")
            return False
        self._held.append(held)
        return True

    def _refuse_array(self, job: Job, why: str) -> None:
        if job.name not in self._array_refused:
            self._array_refused[job.name] = why
            self._log_once(job.name, "array-unsupported", "job-array",
                           f"job_array is ignored: {why}; the job is submitted on its own")

    def _submit_held(self, active: int) -> int:
        """Carry out the held submissions: arrays where a group is large enough, the rest one by one. Returns how
        many jobs were submitted."""
        held, self._held = self._held, []
        if not held or self._stop.is_set():
            return 0
        try:
            cap = self.scheduler.max_array_tasks()  # type: ignore[attr-defined]
        except SchedulerUnavailable as error:
            self._log(None, "submit-unknown", f"the cluster's array size could not be read ({error}): "
                                              f"{len(held)} jobs wait for the next cycle", logging.WARNING)
            return 0
        groups: dict[tuple[str, ...], list[tuple[HeldSubmit, array_driver.Arrayable]]] = {}
        alone: list[HeldSubmit] = []
        for item in held:
            shape = self._arrayable(item.job) if cap > 1 else "the cluster allows no arrays (MaxArraySize)"
            if isinstance(shape, str):
                self._refuse_array(item.job, shape)
                alone.append(item)
            else:
                groups.setdefault(shape.key, []).append((item, shape))
        arrays = []
        for members in groups.values():
            if len(members) >= members[0][0].job.array_min_tasks:
                arrays += array_driver.chunks(members, cap)
            else:
                alone += [item for item, _ in members]
        submitted, limited = 0, False
        for members in arrays:
            if limited:  # an array met a queue limit: the rest go one by one, which meets it task by task
                alone += [item for item, _ in members]
                continue
            outcome = self._submit_array(members)
            if outcome is None:
                self._release(alone, "not submitted: the scheduler stopped answering")
                return submitted
            count, unsent, limited = outcome
            submitted += count
            alone += unsent
        order = {item.job.name: position for position, item in enumerate(held)}
        alone.sort(key=lambda i: order[i.job.name])
        for position, item in enumerate(alone):
            limit = self._queue_limit
            if limit is not None and active + submitted >= limit.cap:
                self._release(alone[position:], "queue limit reached: waiting for a free slot")
                break
            outcome = self._submit_alone(item, active + submitted) if not self._stop.is_set() else None
            if outcome is None:
                self._release(alone[position + 1:], "not submitted: the scheduler stopped answering")
                break
            submitted += outcome
        return submitted

    def _release(self, items: Sequence[HeldSubmit], reason: str) -> None:
        """Held jobs not submitted this cycle wait again, keeping their go (the queue had no room)."""
        for item in items:
            if item.state == JobState.QUEUED:  # a member of a refused array: it has no attempt
                self.store.set_state(item.job.name, JobState.WAITING, reason)
            self.store.update_job(item.job.name, start_ready=1)

    def _arrayable(self, job: Job) -> array_driver.Arrayable | str:
        try:
            with open(job.sbatch_script, encoding="utf-8", errors="replace") as handle:
                text = handle.read()
        except OSError as error:
            return f"its script cannot be read ({error.strerror})"
        command = self.scheduler.array_command(job, "{script}")  # type: ignore[attr-defined]
        if command is None:
            return "its cmd does not run sbatch on its script, so --array cannot be passed"
        shape = array_driver.arrayable(job.name, os.path.abspath(job.sbatch_script), text, command, job.output_file,
                                       lambda pattern: resolve_output_path(pattern, array_driver.JOB_ID_MARK, job.name))
        if isinstance(shape, array_driver.Arrayable):
            shape = array_driver.Arrayable((*shape.key, str(job.array_min_tasks)), shape.task, shape.header)
        return shape

    def _mark_submitting(self, item: HeldSubmit) -> HeldSubmit | None:
        """The held job as QUEUED ("submitting"), or None when another writer (`orch cancel`) moved it since the cycle
        decided: that decision is dropped."""
        try:
            self.store.set_state(item.job.name, JobState.QUEUED, f"submitting ({item.action.reason})", expected=item.state)
        except StateConflict as conflict:
            self._log(item.job.name, "conflict", f"state changed meanwhile ({conflict}); decision dropped", logging.WARNING)
            return None
        return replace(item, state=JobState.QUEUED)  # submitted on its own after all, it is QUEUED already

    def _submit_alone(self, item: HeldSubmit, active: int) -> int | None:
        """A held job submitted as a job of its own: 1 submitted, 0 not (it waits), None: the scheduler did not answer."""
        if self._mark_submitting(item) is None:
            return 0
        outcome = self._submit(item.job, item.action, item.output, active)
        return None if outcome is None else int(outcome)

    def _submit_array(self, members: Sequence[tuple[HeldSubmit, array_driver.Arrayable]]
                      ) -> tuple[int, list[HeldSubmit], bool] | None:
        """One array of `members`. Returns (tasks submitted, jobs to submit on their own instead, whether a queue limit
        refused it), or None when the scheduler did not answer (the intents are kept: the next cycle finds the tasks
        again)."""
        if not self._may_act():
            return None
        kept: list[tuple[HeldSubmit, array_driver.Arrayable, tuple]] = []
        for held, shape in members:
            item = self._mark_submitting(held)
            if item is None:
                continue
            estimate, provenance = self._submission_facts(item.job)
            if not self._within_budget(item.job, estimate):
                continue
            if estimate is not None:
                self._committed_gpu_hours += estimate.gpu_hours  # the next member is weighed with this one in
            kept.append((item, shape, (estimate, provenance)))
        if len(kept) < 2:
            self._uncommit([estimate for _, _, (estimate, _) in kept])  # `_submit` counts a job it submits
            return 0, [item for item, _, _ in kept], False
        driver, name = self._write_driver(members[0][1].header, [shape.task for _, shape, _ in kept])
        attempts = []
        for index, (item, _, (estimate, provenance)) in enumerate(kept):
            attempts.append(self.store.record_intent(
                item.job.name, output_offset=new_run_offset(item.job, item.output),
                estimate_gpus=estimate.gpus if estimate else None, estimate_hours=estimate.hours if estimate else None,
                provenance=provenance, array_task=(driver, index)))
            self.store.update_job(item.job.name, start_ready=0)
            make_output_dir(item.job)
        self.store.write_snapshot()  # readers see the intents even if this monitor dies during the submit
        first = kept[0][0].job
        try:
            array_id, exclude = self._excluding(  # type: ignore[attr-defined]
                name, None, f"array {name}",
                lambda nodes: self.scheduler.submit_array(first, driver, len(kept), nodes))  # type: ignore[attr-defined]
        except SchedulerUnavailable as error:
            self._log(None, "submit-unknown", f"array {name} of {len(kept)} jobs: submit did not answer ({error}); "
                                              "the intents are kept and its tasks are looked for in the queue before "
                                              "anything is submitted again", logging.WARNING)
            return None
        except SubmitError as error:
            # Definitely not submitted: forget the intents and submit the jobs one by one, which also meets a queue
            # limit task by task (Slurm counts each task of an array as a job: slurm.conf(5) MaxJobCount).
            for attempt in attempts:
                self.store.discard_intent(attempt)
            self._uncommit([estimate for _, _, (estimate, _) in kept])
            limited = isinstance(error, SubmitLimited)
            why = "a queue limit" if limited else "an error"
            said = " ".join(line.strip() for line in str(error).split(": ", 1)[-1].splitlines())[-300:]
            self._log(None, "array-refused", f"array {name} of {len(kept)} jobs refused for {why} ({said}): submitting "
                                             "them one by one", logging.WARNING)
            if not limited:
                for item, _, _ in kept:
                    self._refuse_array(item.job, f"an array of it was refused ({said[-200:]})")
            return 0, [item for item, _, _ in kept], limited
        for index, ((item, _, _), attempt) in enumerate(zip(kept, attempts)):
            task = array_driver.task_id(array_id, index)
            self.store.record_submitted(attempt, task)
            kind = "resubmitted" if item.action.resubmit else "submitted"
            self._log(item.job.name, kind, f"{kind} {task} ({item.action.reason}) as task {index} of array {array_id} "
                                           f"({len(kept)} tasks)" + (f", excluding {','.join(exclude)}" if exclude else ""))
        return len(kept), [], False

    def _uncommit(self, estimates: Sequence) -> None:
        for estimate in estimates:
            if estimate is not None:
                self._committed_gpu_hours -= estimate.gpu_hours

    def _write_driver(self, header: Sequence[str], tasks: Sequence[array_driver.ArrayTask]) -> tuple[str, str]:
        """The array's driver script, written whole before its intents name it; its path and job name."""
        digest = hashlib.sha256(f"{self._clock()!r}\n{os.getpid()}\n{[t.name for t in tasks]}".encode()).hexdigest()[:8]
        name = array_driver.array_name(digest, tasks[0].name)
        folder = self.store.path.parent / ARRAYS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = str(folder / f"{name}.sbatch")
        write_atomically(path, array_driver.driver_script(name, header, tasks, str(folder / f"{name}.out")))
        return path, name
