"""The monitor's job arrays against a fake scheduler that keeps array tasks as Slurm does (`<array id>_<index>`, named
and run by the array's driver script): grouping, the task cap, --max-jobs, a lost reply, a refused array, and a
group below its threshold. The real cluster's runs are in tests/test_array_slurm.py."""

from __future__ import annotations

import itertools
from pathlib import Path

from orchestrator.jobs import Job
from orchestrator.scheduler.base import Observation, SchedulerState as S, SchedulerUnavailable, SubmitError, SubmitLimited
from orchestrator.scheduler.slurm import array_command
from test_monitor_loop import Clock, FakeScheduler, make_monitor, states


class ArrayScheduler(FakeScheduler):
    """The fake queue, with `sbatch --array`: one call submits `count` tasks of the driver."""

    def __init__(self, cap: int = 1001) -> None:
        super().__init__()
        self.cap = cap
        self.arrays: list[int] = []  # tasks per accepted array
        self.array_calls = 0
        self.refuse_arrays = False
        self.lose_array_reply = False
        self._array_ids = itertools.count(5000)

    def array_command(self, job: Job, driver: str) -> str | None:
        return array_command(job, driver)

    def max_array_tasks(self) -> int:
        return self.cap

    def submit_array(self, job: Job, driver: str, count: int, exclude=()) -> str:
        self.array_calls += 1
        if self.refuse_arrays:
            raise SubmitError("sbatch: error: Batch job submission failed: Invalid job array specification")
        assert count <= self.cap
        if self.submit_limit is not None and len(self.active()) + count > self.submit_limit:
            self.refused_for_limit += 1  # Slurm counts each task (slurm.conf(5) MaxJobCount), refuses the array whole
            raise SubmitLimited("sbatch: error: AssocMaxSubmitJobLimit")
        array_id = str(next(self._array_ids))
        name = Path(driver).name.removesuffix(".sbatch")
        for index in range(count):
            self.jobs[f"{array_id}_{index}"] = Observation(f"{array_id}_{index}", name, S.PENDING, script=driver)
        self.arrays.append(count)
        if self.lose_array_reply:
            raise SchedulerUnavailable("sbatch timed out")
        return array_id


def array_jobs(tmp_path: Path, count: int, time_limits: tuple[str, ...] = ("10",), min_tasks: int = 2) -> list[Job]:
    jobs = []
    for index in range(count):
        name = f"job{index}"
        script, log = tmp_path / f"{name}.sbatch", str(tmp_path / f"{name}.out")
        script.write_text(f"#!/bin/bash\n#SBATCH --job-name={name}\n#SBATCH --output={log}\n"
                          f"#SBATCH --time={time_limits[index % len(time_limits)]}\necho hi\n")
        jobs.append(Job(name=name, template="t", sbatch_script=str(script), output_file=log,
                        cmd="sbatch {sbatch_script}", check_interval_secs=10.0, termination_str="TRAINING DONE",
                        array_min_tasks=min_tasks))
    return jobs


def ids(monitor) -> dict[str, str]:
    return {name: record.current.scheduler_id for name, record in monitor.store.jobs().items() if record.current}


def test_ready_jobs_go_as_arrays_within_the_cap_and_max_jobs(tmp_path: Path) -> None:
    scheduler, clock = ArrayScheduler(cap=3), Clock()
    monitor = make_monitor(tmp_path, array_jobs(tmp_path, 7), scheduler, clock, max_jobs=5)
    report = monitor.cycle()
    assert report.submitted == 5 and scheduler.queries == 1
    assert scheduler.arrays == [3, 2] and scheduler.submits == []  # 5 of 7 (--max-jobs), evenly under the cap
    assert ids(monitor) == {"job0": "5000_0", "job1": "5000_1", "job2": "5000_2", "job3": "5001_0", "job4": "5001_1"}
    assert states(monitor)["job5"] == "waiting"
    scheduler.set("5000_1", S.FAILED, 1)  # one task crashes: the one free slot resubmits it alone, a job of its own
    clock.now += 1
    monitor.cycle()
    assert scheduler.arrays == [3, 2] and scheduler.submits == ["job1"] and ids(monitor)["job1"] == "1000"
    assert [ids(monitor)[name] for name in ("job0", "job2", "job3")] == ["5000_0", "5000_2", "5001_0"]
    for task in ("5000_0", "5000_2"):  # two leave: job5 and job6 go together as an array of 2
        scheduler.set(task, S.COMPLETED, 0)
        Path(tmp_path / f"job{task[-1]}.out").write_text("TRAINING DONE\n")
    clock.now += 1
    monitor.cycle()
    assert scheduler.arrays == [3, 2, 2] and (ids(monitor)["job5"], ids(monitor)["job6"]) == ("5002_0", "5002_1")


def test_jobs_of_different_resources_or_below_the_threshold_are_not_mixed(tmp_path: Path) -> None:
    scheduler, clock = ArrayScheduler(), Clock()
    monitor = make_monitor(tmp_path, array_jobs(tmp_path, 5, time_limits=("10", "20"), min_tasks=3), scheduler, clock)
    monitor.cycle()
    # job0, 2, 4 share --time=10: an array of 3; job1 and 3 (--time=20) are 2, below 3: one by one.
    assert scheduler.arrays == [3] and scheduler.submits == ["job1", "job3"]
    assert [ids(monitor)[f"job{i}"] for i in (0, 2, 4)] == ["5000_0", "5000_1", "5000_2"]


def test_a_lost_array_reply_keeps_the_intents_and_the_next_cycle_adopts_every_task(tmp_path: Path) -> None:
    scheduler, clock = ArrayScheduler(), Clock()
    monitor = make_monitor(tmp_path, array_jobs(tmp_path, 3), scheduler, clock)
    scheduler.lose_array_reply = True
    monitor.cycle()
    records = monitor.store.jobs()
    assert [(r.current.scheduler_id, r.current.array_index) for r in records.values()] == [(None, 0), (None, 1), (None, 2)]
    scheduler.lose_array_reply = False
    clock.now += 1
    monitor.cycle()
    assert scheduler.array_calls == 1 and scheduler.submits == []
    assert ids(monitor) == {"job0": "5000_0", "job1": "5000_1", "job2": "5000_2"}
    assert set(states(monitor).values()) == {"queued"}


def test_a_refused_array_submits_its_jobs_one_by_one_and_never_again_as_an_array(tmp_path: Path) -> None:
    scheduler, clock = ArrayScheduler(), Clock()
    monitor = make_monitor(tmp_path, array_jobs(tmp_path, 3), scheduler, clock)
    scheduler.refuse_arrays = True
    report = monitor.cycle()
    assert report.submitted == 3 and scheduler.submits == ["job0", "job1", "job2"] and scheduler.array_calls == 1
    assert all(not r.current.array_script for r in monitor.store.jobs().values())
    for observation in scheduler.active():
        scheduler.set(observation.scheduler_id, S.FAILED, 1)
    clock.now += 1
    monitor.cycle()
    assert scheduler.array_calls == 1 and scheduler.submits == ["job0", "job1", "job2"] * 2
    assert len([e for e in monitor.store.events(kind="array-refused")]) == 1


def test_an_array_refused_for_a_queue_limit_fills_it_one_job_at_a_time_and_tries_no_other_array(tmp_path: Path) -> None:
    scheduler, clock = ArrayScheduler(cap=3), Clock()
    scheduler.submit_limit = 4  # MaxSubmitJobs
    monitor = make_monitor(tmp_path, array_jobs(tmp_path, 9), scheduler, clock)
    report = monitor.cycle()
    # 3 + 3 + 3: the first array fits, the second would pass the limit and is refused whole; the third is never sent.
    # One by one, job3 takes the last slot and job4 meets the limit; nothing more is tried this cycle.
    assert scheduler.arrays == [3] and scheduler.array_calls == 2 and scheduler.submits == ["job3"]
    assert scheduler.refused_for_limit == 2 and report.submitted == 4
    assert [states(monitor)[f"job{i}"] for i in range(9)] == ["queued"] * 4 + ["waiting"] * 5
    assert all(not r.current for name, r in monitor.store.jobs().items() if name >= "job4")  # no intent left behind
