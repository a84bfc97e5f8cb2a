"""Job arrays without a cluster: which jobs may share an array, the driver script (run here with bash, as a Slurm task
would run it), Slurm's array output as recorded from the test cluster (tests/fixtures/slurm/record_arrays.sh), the
submit command, and the store and ownership rules that find a task again."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from orchestrator.config.jobs_from_params import job_from_params
from orchestrator.errors import UserError
from orchestrator.jobs import JOB_ARRAY_AUTO_MIN_TASKS, Job
from orchestrator.monitor.ownership import array_task_of, recorded_submission_of, submitted_as
from orchestrator.monitor.probes import resolve_output_path
from orchestrator.scheduler import array_driver, slurm_parse
from orchestrator.scheduler.base import SchedulerState, SubmitError, SubmitLimited
from orchestrator.scheduler.slurm import SlurmScheduler, array_command
from orchestrator.state.store import StateStore
from test_scheduler_slurm import ReplayRunner, recorded

FIXTURES = Path(__file__).parent / "fixtures" / "slurm"
ARRAY_ID = (FIXTURES / "arrays_id.txt").read_text().strip()


def write_job(root: Path, name: str, *sbatch: str, output: str | None = None, cmd: str = "sbatch {sbatch_script}",
              body: str = 'echo "ran $SLURM_JOB_NAME${SLURM_ARRAY_TASK_ID}"; echo "to stderr" >&2') -> Job:
    script = root / f"{name}.sbatch"
    log = output if output is not None else str(root / "logs" / "%x-%j.out")
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --output={log}", *(f"#SBATCH {s}" for s in sbatch),
             body]
    script.write_text("\n".join(lines) + "\n")
    return Job(name=name, template="", sbatch_script=str(script), output_file=log, cmd=cmd, array_min_tasks=2)


def shape_of(job: Job) -> array_driver.Arrayable | str:
    return array_driver.arrayable(job.name, job.sbatch_script, Path(job.sbatch_script).read_text(),
                                  array_command(job, "{script}") or "", job.output_file,
                                  lambda pattern: resolve_output_path(pattern, array_driver.JOB_ID_MARK, job.name))


# -- the key ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "tasks"), [(None, 0), ("off", 0), (False, 0), ("auto", JOB_ARRAY_AUTO_MIN_TASKS),
                                              (True, JOB_ARRAY_AUTO_MIN_TASKS), ("always", 2), (5, 5)])
def test_job_array_key_values(value, tasks) -> None:
    params = {"name": "a", "template": "t", "output_file": "o", "cmd": "c", "sbatch_script": "s", "job_array": value}
    assert job_from_params(params, 0).array_min_tasks == tasks


@pytest.mark.parametrize("value", [1, "sometimes", 2.5])
def test_job_array_key_refuses_what_it_cannot_mean(value) -> None:
    params = {"name": "a", "template": "t", "output_file": "o", "cmd": "c", "sbatch_script": "s", "job_array": value}
    with pytest.raises(UserError, match=r"job a: key 'job_array' must be off, auto .* got"):
        job_from_params(params, 0)


# -- who may share an array -------------------------------------------------------------------------------------


def test_jobs_that_differ_only_in_name_and_log_share_a_key(tmp_path: Path) -> None:
    a, b = (write_job(tmp_path, n, "--time=10", "--partition=debug") for n in ("a", "b"))
    c = write_job(tmp_path, "c", "--time=20", "--partition=debug")
    shapes = [shape_of(job) for job in (a, b, c)]
    assert all(isinstance(s, array_driver.Arrayable) for s in shapes)
    assert shapes[0].key == shapes[1].key != shapes[2].key
    assert shapes[0].header == (" --time=10", " --partition=debug")


@pytest.mark.parametrize(("sbatch", "output", "why"), [
    (("--array=0-3",), None, "an array already"),
    (("-a 1-2",), None, "an array already"),
    (("--job-name=x --time=5",), None, "mixes per-job and shared options"),
    ((), "/tmp/%A_%a.out", "uses %A, %a"),
    ((), "/tmp/%5j.out", "uses %5j"),
    (("--output=/elsewhere.out",), None, "is not its output_file"),
])
def test_what_cannot_be_an_array_task_says_why(tmp_path: Path, sbatch, output, why) -> None:
    job = write_job(tmp_path, "a", *sbatch, output=output)
    shape = shape_of(job)
    assert isinstance(shape, str) and why in shape, shape


def test_a_cmd_that_runs_sbatch_out_of_sight_has_no_array_command(tmp_path: Path) -> None:
    job = write_job(tmp_path, "a", cmd="./submit.sh {sbatch_script}")
    assert array_command(job, "/d.sbatch") is None
    literal = write_job(tmp_path, "b", cmd="cd x && sbatch --qos=hi SCRIPT")
    literal = Job(**{**literal.__dict__, "cmd": f"cd x && sbatch --qos=hi {literal.sbatch_script}"})
    assert array_command(literal, "/d.sbatch") == "cd x && sbatch --qos=hi /d.sbatch"


# -- the driver, run as Slurm would run a task --------------------------------------------------------------------


def run_task(driver: Path, index: int, cwd: Path, array_id: str = "77") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLURM_ARRAY_JOB_ID": array_id, "SLURM_ARRAY_TASK_ID": str(index), "SLURM_JOB_NAME": "orch-x"}
    return subprocess.run(["bash", str(driver)], cwd=cwd, env=env, capture_output=True, text=True, timeout=30)


def test_each_task_runs_its_own_script_with_its_name_and_log(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    jobs = [write_job(tmp_path, "a", "--time=10"), write_job(tmp_path, "b", "--time=10", "--open-mode=append",
                                                              output="logs/b.out")]
    shapes = [shape_of(job) for job in jobs]
    assert shapes[0].key[2:] == shapes[1].key[2:]  # the same shared lines (--open-mode is per task)
    driver = tmp_path / "orch-array-x.sbatch"
    driver.write_text(array_driver.driver_script("orch-array-x", shapes[0].header, [s.task for s in shapes]))
    text = driver.read_text()
    assert text.startswith("#!/bin/bash\n#SBATCH --job-name=orch-array-x\n#SBATCH --output=/dev/null\n"
                           "#SBATCH --open-mode=append\n#SBATCH --time=10\n#")
    (tmp_path / "logs" / "b.out").write_text("an earlier segment\n")
    assert run_task(driver, 0, tmp_path).returncode == 0
    assert run_task(driver, 1, tmp_path).returncode == 0
    # %x-%j: the job's name, and the task's id as squeue and sacct print it (what the monitor resolves %j to).
    assert (tmp_path / "logs" / "a-77_0.out").read_text() == "ran a\nto stderr\n"
    assert (tmp_path / "logs" / "b.out").read_text() == "an earlier segment\nran b\nto stderr\n"  # appended
    unknown = run_task(driver, 2, tmp_path)
    assert unknown.returncode == 2 and "has no task 2" in unknown.stderr


def test_a_task_s_error_log_is_its_own(tmp_path: Path) -> None:
    job = write_job(tmp_path, "a", f"--error={tmp_path}/err-%j.txt", output=str(tmp_path / "out-%j.txt"))
    shape = shape_of(job)
    driver = tmp_path / "d.sbatch"
    driver.write_text(array_driver.driver_script("d", shape.header, [shape.task]))
    assert run_task(driver, 0, tmp_path, array_id="5").returncode == 0
    assert (tmp_path / "out-5_0.txt").read_text() == "ran a\n"
    assert (tmp_path / "err-5_0.txt").read_text() == "to stderr\n"


def test_chunks_are_even_and_never_above_the_cap() -> None:
    assert [len(c) for c in array_driver.chunks(list(range(9)), 4)] == [3, 3, 3]
    assert [len(c) for c in array_driver.chunks(list(range(8)), 5)] == [4, 4]
    assert [len(c) for c in array_driver.chunks(list(range(5)), 5)] == [5]
    assert [c for chunk in array_driver.chunks(list(range(11)), 3) for c in chunk] == list(range(11))


def test_the_cluster_s_task_cap_is_read_from_its_config() -> None:
    config = slurm_parse.parse_key_values(recorded("arrays_config").stdout)
    assert array_driver.max_array_tasks(config) == 5  # MaxArraySize=5: indices 0-4
    scheduler_parameters = "bf_continue,max_array_tasks=300"
    assert array_driver.max_array_tasks({"MaxArraySize": "1001", "SchedulerParameters": scheduler_parameters}) == 300
    assert array_driver.max_array_tasks({}) == 1001
    assert array_driver.max_array_tasks({"MaxArraySize": "0"}) == 0


# -- Slurm's own output ---------------------------------------------------------------------------------------------


def test_squeue_lists_each_pending_task_with_r_and_sacct_names_tasks() -> None:
    expanded = slurm_parse.parse_squeue(recorded("arrays_squeue").stdout)
    assert [expanded[f"{ARRAY_ID}_{i}"].state for i in range(5)] == [SchedulerState.PENDING] * 5
    folded = slurm_parse.parse_squeue(recorded("arrays_squeue_plain").stdout)
    assert f"{ARRAY_ID}_0" not in folded and f"{ARRAY_ID}_[0-4]" in folded  # why the query passes -r
    later = slurm_parse.parse_squeue(recorded("arrays_squeue_later").stdout)
    assert later[f"{ARRAY_ID}_1"].state == SchedulerState.FAILED and later[f"{ARRAY_ID}_1"].exit_code == 3
    assert later[f"{ARRAY_ID}_2"].state == SchedulerState.CANCELLED
    assert later[f"{ARRAY_ID}_0"].state == SchedulerState.RUNNING
    ended = slurm_parse.parse_sacct(recorded("arrays_sacct").stdout)
    assert {k: v.state for k, v in ended.items()} == {f"{ARRAY_ID}_1": SchedulerState.FAILED,
                                                       f"{ARRAY_ID}_2": SchedulerState.CANCELLED,
                                                       f"{ARRAY_ID}_4": SchedulerState.RUNNING}


def test_submit_array_passes_array_after_the_sbatch_word_and_reads_refusals(tmp_path: Path) -> None:
    job = write_job(tmp_path, "a", cmd="export X=1; sbatch {sbatch_script}")
    runner = ReplayRunner({"submit": recorded("arrays_sbatch")})
    assert SlurmScheduler(runner).submit_array(job, "/s/d.sbatch", 5, exclude=["n1"]) == ARRAY_ID
    assert runner.calls == [["/bin/sh", "-c", "export X=1; sbatch --exclude=n1 --array=0-4 /s/d.sbatch"]]
    with pytest.raises(SubmitLimited):
        SlurmScheduler(ReplayRunner({"submit": recorded("arrays_sbatch_submit_limit")})).submit_array(job, "/d", 4)
    with pytest.raises(SubmitError, match="Invalid job array specification"):
        SlurmScheduler(ReplayRunner({"submit": recorded("arrays_sbatch_too_large")})).submit_array(job, "/d", 6)


# -- finding a task again ---------------------------------------------------------------------------------------


def test_an_intent_names_its_driver_and_index_and_a_task_in_the_queue_fulfils_it(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path / "state")
    store.ensure_jobs(["a", "b"])
    driver = str(tmp_path / "arrays" / "orch-array-1234abcd-a.sbatch")
    for index, name in enumerate("ab"):
        store.record_intent(name, array_task=(driver, index))
    records = store.jobs()
    assert (records["b"].current.array_script, records["b"].current.array_index) == (driver, 1)
    intents = {(r.current.array_script, r.current.array_index): r.name for r in records.values()}
    listed = slurm_parse.parse_squeue(recorded("arrays_squeue").stdout)
    task = listed[f"{ARRAY_ID}_1"]
    mine = task.__class__(**{**task.__dict__, "name": "orch-array-1234abcd-a", "script": driver})
    assert array_task_of(mine, intents) == "b"
    assert array_task_of(task, intents) is None  # another driver (another campaign's array, same index): not ours
    other_index = mine.__class__(**{**mine.__dict__, "scheduler_id": f"{ARRAY_ID}_4"})
    assert array_task_of(other_index, intents) is None
    store.record_submitted(records["b"].current.id, f"{ARRAY_ID}_1")
    attempt = store.job("b").current
    assert submitted_as(attempt, "b.sbatch") == ("orch-array-1234abcd-a", driver)
    assert recorded_submission_of(mine, *submitted_as(attempt, "b.sbatch")).state == SchedulerState.PENDING
    assert recorded_submission_of(task, *submitted_as(attempt, "b.sbatch")).state == SchedulerState.GONE
    store.close()
