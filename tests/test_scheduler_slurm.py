"""The Slurm backend: against the real test cluster (marked `slurm`), and at the subprocess edge with
outputs recorded from that cluster (tests/fixtures/slurm/)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.jobs import Job
from orchestrator.scheduler.base import (
    Observation,
    SchedulerState as S,
    SchedulerUnavailable,
    SubmitError,
    SubmitLimited,
)
from orchestrator.scheduler import slurm_parse
from orchestrator.scheduler.slurm import CommandResult, SlurmScheduler, final_observation, run_command

FIXTURES = Path(__file__).parent / "fixtures" / "slurm"


def recorded(name: str) -> CommandResult:
    """A recorded command: stdout, stderr and exit code as the real command gave them."""
    def text(suffix: str) -> str:
        path = FIXTURES / f"{name}.{suffix}"
        return path.read_text() if path.exists() else ""

    return CommandResult(int(text("rc").strip()), text("txt"), text("err"))


def recorded_ids() -> dict[str, str]:
    return dict(line.split("=", 1) for line in (FIXTURES / "ids.txt").read_text().split())


class ReplayRunner:
    """Answers each command with a recorded output; counts the commands."""

    def __init__(self, answers: dict[str, CommandResult | Callable[[Sequence[str]], CommandResult]]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], timeout: float) -> CommandResult:
        self.calls.append(list(argv))
        command = "submit" if argv[0] == "/bin/sh" else " ".join(argv[:3]) if argv[0] == "scontrol" else argv[0]
        answer = self.answers[command]
        return answer(argv) if callable(answer) else answer


def make_job(tmp_path: Path, name: str, body: str, *sbatch: str) -> Job:
    script = tmp_path / f"{name}.sbatch"
    log = tmp_path / f"{name}.log"
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --output={log}", *(f"#SBATCH {s}" for s in sbatch), body]
    script.write_text("\n".join(lines) + "\n")
    return Job(name=name, template="", sbatch_script=str(script), output_file=str(log), cmd="sbatch {sbatch_script}")


# -- at the subprocess edge, with recorded outputs --------------------------------------------------------


def test_submit_reads_the_id_of_plain_and_parsable_output(tmp_path: Path) -> None:
    job = make_job(tmp_path, "a", "true")
    for fixture in ("sbatch_plain", "sbatch_parsable"):
        runner = ReplayRunner({"submit": recorded(fixture)})
        job_id = SlurmScheduler(runner).submit(job)
        assert job_id == recorded(fixture).stdout.split()[-1]
        assert runner.calls == [["/bin/sh", "-c", f"sbatch {job.sbatch_script}"]]


def test_submit_controller_down_is_unavailable_and_refusals_are_submit_errors(tmp_path: Path) -> None:
    job = make_job(tmp_path, "a", "true")
    with pytest.raises(SchedulerUnavailable, match="Unable to contact slurm controller"):
        SlurmScheduler(ReplayRunner({"submit": recorded("sbatch_controller_down")})).submit(job)
    for fixture in ("sbatch_bad_option", "sbatch_missing_script"):
        with pytest.raises(SubmitError):
            SlurmScheduler(ReplayRunner({"submit": recorded(fixture)})).submit(job)
    with pytest.raises(SubmitError, match="no job id"):
        SlurmScheduler(ReplayRunner({"submit": CommandResult(0, "queued somewhere\n", "")})).submit(job)


def test_a_hanging_command_times_out_as_unavailable() -> None:
    started = time.monotonic()
    with pytest.raises(SchedulerUnavailable, match="timed out"):
        run_command(["/bin/sh", "-c", "sleep 30 & sleep 30"], timeout=0.5)
    assert time.monotonic() - started < 10
    with pytest.raises(SchedulerUnavailable, match="cannot run"):
        run_command(["/no/such/command"], timeout=5)


def test_query_uses_squeue_for_listed_jobs_and_finds_active_jobs_by_name() -> None:
    ids = recorded_ids()
    runner = ReplayRunner({"squeue": recorded("squeue_running"), "scontrol show config": recorded("scontrol_show_config"),
                           "sacct": recorded("sacct_final")})
    names = ["orchfix-held", "orchfix-sleeper", "nobody"]
    seen = SlurmScheduler(runner).query([ids["sleeper"]], names)
    assert runner.calls == [["squeue", "--me", "-r", "-h", "-t", "all", "-O", runner.calls[0][-1]]]
    assert seen[ids["sleeper"]].state is S.RUNNING
    # Found by name: ids that were never asked for, with the script that tells whose they are.
    assert (seen[ids["held"]].state, seen[ids["held"]].reason) == (S.PENDING, "JobHeldUser")
    assert seen[ids["held"]].script == "/WORK/held.sh"
    assert set(seen) == {ids["held"], ids["sleeper"]}
    # At the end, asked-for ids come with their final state (from accounting), ended jobs are not found by name.
    runner.answers["squeue"] = recorded("squeue_final")
    final = SlurmScheduler(runner).query([ids["ok"], ids["fail"]], names)
    assert (final[ids["ok"]].state, final[ids["ok"]].exit_code) == (S.COMPLETED, 0)
    assert (final[ids["fail"]].state, final[ids["fail"]].exit_code) == (S.FAILED, 3)
    assert final[ids["fail"]].script == "/WORK/fail.sh"  # what only squeue knows is kept
    assert set(final) == {ids["ok"], ids["fail"]}


def test_with_accounting_sacct_is_asked_once_for_all_ended_jobs() -> None:
    ids = recorded_ids()
    runner = ReplayRunner({"squeue": CommandResult(0, "", ""), "scontrol show config": recorded("scontrol_show_config"),
                           "sacct": recorded("sacct_final")})
    asked = [ids["timeout"], ids["preemptcancel"], ids["nodefail"], "424242"]
    seen = SlurmScheduler(runner).query(asked, [])
    assert [seen[i].state for i in asked] == [S.TIMEOUT, S.PREEMPTED, S.NODE_FAIL, S.GONE]
    assert [c[0] for c in runner.calls] == ["squeue", "scontrol", "sacct"]
    sacct = runner.calls[2]
    assert sacct[sacct.index("-j") + 1] == ",".join(sorted(asked, key=int))
    # sacct failing means unknown, never gone.
    runner.answers["sacct"] = recorded("sacct_disabled")
    with pytest.raises(SchedulerUnavailable):
        SlurmScheduler(runner).query([ids["ok"]], [])


def test_final_observation_trusts_accounting_only_when_it_is_final() -> None:
    queue_done = Observation("5", "j", S.COMPLETED, 0, reason="NonZeroExitCode", script="/w/j.sh")
    lagging = Observation("5", "j", S.RUNNING)
    accounted = Observation("5", "j", S.FAILED, 2, work_dir="/w")
    assert final_observation("5", queue_done, lagging) is queue_done  # slurmdbd behind the controller
    merged = final_observation("5", queue_done, accounted)
    assert (merged.state, merged.exit_code, merged.script, merged.reason) == (S.FAILED, 2, "/w/j.sh", "NonZeroExitCode")
    assert final_observation("5", None, accounted) is accounted  # past MinJobAge
    stale = final_observation("5", None, lagging)  # the controller lists no such active job
    assert stale.state is S.GONE and "accounting" in stale.reason
    assert final_observation("5", None, None, Observation("5", "j", S.TIMEOUT)).state is S.TIMEOUT  # jobcomp
    assert final_observation("5", None, None).state is S.GONE


def test_submit_refused_by_a_queue_limit_is_limited_not_an_error(tmp_path: Path) -> None:
    job = make_job(tmp_path, "a", "true")
    for fixture in ("sbatch_assoc_submit_limit", "sbatch_qos_submit_limit"):
        with pytest.raises(SubmitLimited, match="SubmitJob"):
            SlurmScheduler(ReplayRunner({"submit": recorded(fixture)})).submit(job)
    for fixture in ("sbatch_bad_partition", "sbatch_bad_account"):
        with pytest.raises(SubmitError) as refused:
            SlurmScheduler(ReplayRunner({"submit": recorded(fixture)})).submit(job)
        assert not isinstance(refused.value, SubmitLimited)


def test_query_controller_down_is_unavailable_never_gone() -> None:
    runner = ReplayRunner({"squeue": recorded("squeue_controller_down")})
    with pytest.raises(SchedulerUnavailable, match="Unable to contact"):
        SlurmScheduler(runner).query(["1", "2"], ["a"])


def _config_without_accounting(jobcomp: Path) -> CommandResult:
    """The recorded config as a cluster without accounting but with jobcomp/filetxt would print it."""
    text = recorded("scontrol_show_config").stdout
    text = re.sub(r"(?m)^(AccountingStorageType\s*=\s*).*$", r"\1accounting_storage/none", text)
    text = re.sub(r"(?m)^(JobCompLoc\s*=\s*).*$", lambda m: m[1] + str(jobcomp), text)
    return CommandResult(0, text, "")


def test_without_accounting_ended_jobs_come_from_the_jobcomp_file_else_gone(tmp_path: Path) -> None:
    ids = recorded_ids()
    jobcomp = tmp_path / "jobcomp.log"
    jobcomp.write_text((FIXTURES / "jobcomp.txt").read_text())
    runner = ReplayRunner({"squeue": CommandResult(0, "", ""), "scontrol show config": _config_without_accounting(jobcomp)})
    scheduler = SlurmScheduler(runner)
    seen = scheduler.query([ids["fail"], ids["timeout"], "424242"], [])
    assert (seen[ids["fail"]].state, seen[ids["fail"]].exit_code) == (S.FAILED, 3)
    assert seen[ids["timeout"]].state is S.TIMEOUT
    assert seen["424242"].state is S.GONE
    assert [c[0] for c in runner.calls] == ["squeue", "scontrol"]
    # The cluster's features are learned once, not on every query.
    scheduler.query([ids["ok"]], [])
    assert [c[0] for c in runner.calls] == ["squeue", "scontrol", "squeue"]


def test_cancel_is_one_scancel_and_already_finished_jobs_are_fine() -> None:
    runner = ReplayRunner({"scancel": recorded("scancel_finished")})
    SlurmScheduler(runner).cancel(["12", "3", "11"])
    assert runner.calls == [["scancel", "3", "11", "12"]]
    SlurmScheduler(ReplayRunner({"scancel": CommandResult(
        1, "", "scancel: error: Kill job error on job id 5: Job/step already completing or completed\n")})).cancel(["5"])
    with pytest.raises(SchedulerUnavailable):
        SlurmScheduler(ReplayRunner({"scancel": recorded("scancel_controller_down")})).cancel(["5"])
    empty = ReplayRunner({})
    SlurmScheduler(empty).cancel([])
    assert empty.calls == []


# -- against the real cluster ---------------------------------------------------------------------


def observe(scheduler: SlurmScheduler, job_id: str, patience: float = 60) -> Observation:
    """One query; waits out a controller another test on this shared cluster is restarting (~20 s)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return scheduler.query([job_id], [])[job_id]
        except SchedulerUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def wait_for(scheduler: SlurmScheduler, job_id: str, done: Callable[[Observation], bool], timeout: float) -> Observation:
    deadline = time.monotonic() + timeout
    while True:
        observation = observe(scheduler, job_id)
        if done(observation) or time.monotonic() > deadline:
            return observation
        time.sleep(1)


def ended(observation: Observation) -> bool:
    return not observation.state.is_active


@pytest.mark.slurm
def test_real_job_completes_with_exit_code_and_output(slurm_cluster, slurm_job_prefix: str, tmp_path: Path) -> None:
    job = make_job(tmp_path, f"{slurm_job_prefix}ok", 'echo "hello from $SLURM_JOB_ID"; sleep 3')
    scheduler = SlurmScheduler()
    job_id = scheduler.submit(job)
    first = observe(scheduler, job_id)
    assert first.state in (S.PENDING, S.RUNNING) and first.name == job.name
    final = wait_for(scheduler, job_id, ended, timeout=120)
    assert (final.state, final.exit_code) == (S.COMPLETED, 0)
    assert Path(job.output_file).read_text().strip() == f"hello from {job_id}"


@pytest.mark.slurm
def test_real_failing_job_is_failed_with_its_exit_code(slurm_cluster, slurm_job_prefix: str, tmp_path: Path) -> None:
    scheduler = SlurmScheduler()
    job_id = scheduler.submit(make_job(tmp_path, f"{slurm_job_prefix}fail", "exit 3"))
    final = wait_for(scheduler, job_id, ended, timeout=120)
    assert (final.state, final.exit_code, final.reason) == (S.FAILED, 3, "NonZeroExitCode")


@pytest.mark.slurm
def test_real_final_state_and_exit_code_come_from_accounting(slurm_cluster, slurm_job_prefix: str,
                                                             tmp_path: Path) -> None:
    calls: list[str] = []

    def counting(argv: Sequence[str], timeout: float) -> CommandResult:
        calls.append(argv[0])
        return run_command(argv, timeout)

    scheduler = SlurmScheduler(counting)
    job_id = scheduler.submit(make_job(tmp_path, f"{slurm_job_prefix}exit7", "sleep 1; exit 7"))
    final = wait_for(scheduler, job_id, ended, timeout=120)
    # What sacct itself says about the job, asked directly:
    row = run_command(["sacct", "-n", "-P", "-X", "--delimiter", slurm_parse.FIELD_SEPARATOR, "-j", job_id,
                       "-o", slurm_parse.SACCT_FIELDS], timeout=30)
    accounted = slurm_parse.parse_sacct(row.stdout)[job_id]
    assert (accounted.state, accounted.exit_code) == (S.FAILED, 7)
    assert (final.state, final.exit_code, final.start_time) == (accounted.state, accounted.exit_code, accounted.start_time)
    assert "sacct" in calls  # the ended job was looked up in accounting, not only in squeue


@pytest.mark.slurm
def test_real_cancel_and_query_by_name(slurm_cluster, slurm_job_prefix: str, tmp_path: Path) -> None:
    scheduler = SlurmScheduler()
    job = make_job(tmp_path, f"{slurm_job_prefix}sleeper", "sleep 300")
    job_id = scheduler.submit(job)
    # A monitor that "forgot" the id finds the job again by its name.
    found = scheduler.query([], [job.name])
    assert list(found) == [job_id] and found[job_id].state.is_active
    scheduler.cancel([job_id])
    final = wait_for(scheduler, job_id, lambda o: o.state is S.CANCELLED, timeout=60)
    assert final.state is S.CANCELLED
    # Once ended, a name-only query no longer returns it.
    assert scheduler.query([], [job.name]) == {}


@pytest.mark.slurm
def test_real_unknown_id_is_gone(slurm_cluster) -> None:
    assert SlurmScheduler().query(["987654321"], [])["987654321"].state is S.GONE


@pytest.mark.slurm
def test_real_query_of_20_jobs_costs_at_most_3_commands(slurm_cluster, slurm_job_prefix: str, tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def counting(argv: Sequence[str], timeout: float) -> CommandResult:
        calls.append(list(argv))
        return run_command(argv, timeout)

    scheduler = SlurmScheduler(counting)
    jobs = [make_job(tmp_path, f"{slurm_job_prefix}n{i}", "sleep 1") for i in range(20)]
    ids = [scheduler.submit(job) for job in jobs]
    assert len(set(ids)) == 20
    for _ in range(2):  # the first query learns the cluster's features (an unknown id is asked for)
        calls.clear()
        seen = scheduler.query([*ids, "987654321"], [job.name for job in jobs])
        assert len(calls) <= 3, calls
        assert set(ids) <= set(seen) and seen["987654321"].state is S.GONE
    assert [c[0] for c in calls] == ["squeue", "sacct"]  # later: the features are known; one sacct for the unknown id
    scheduler.cancel(ids)


@pytest.mark.slurm
def test_unreachable_controller_makes_every_command_unavailable(slurm_cluster, tmp_path: Path) -> None:
    """The same commands pointed at a port where no slurmctld listens (what a stopped controller gives)."""
    config = tmp_path / "slurm.conf"
    text = Path(os.environ["SLURM_CONF"]).read_text()
    config.write_text(re.sub(r"(?m)^SlurmctldPort=.*$", "SlurmctldPort=6899", text))
    scheduler = SlurmScheduler(env=dict(os.environ, SLURM_CONF=str(config)))
    job = make_job(tmp_path, "orchtest-unreachable", "true")
    with pytest.raises(SchedulerUnavailable, match="Unable to contact slurm controller"):
        scheduler.query(["1"], ["x"])
    with pytest.raises(SchedulerUnavailable, match="Unable to contact slurm controller"):
        scheduler.submit(job)


@pytest.mark.slurm
@pytest.mark.slow
def test_real_timeout(slurm_cluster, slurm_job_prefix: str, tmp_path: Path) -> None:
    scheduler = SlurmScheduler()
    job_id = scheduler.submit(make_job(tmp_path, f"{slurm_job_prefix}timeout", "sleep 300", "--time=0:01"))
    # Slurm enforces the limit 30-60 s after it passes.
    final = wait_for(scheduler, job_id, ended, timeout=240)
    assert (final.state, final.reason) == (S.TIMEOUT, "TimeLimit")


@pytest.mark.slurm
@pytest.mark.slow
def test_real_controller_stopped_then_back(slurm_cluster, slurm_job_prefix: str, tmp_path: Path) -> None:
    """Stops slurmctld for real (briefly: other users of the test cluster see it down too)."""
    scheduler = SlurmScheduler()
    job = make_job(tmp_path, f"{slurm_job_prefix}survivor", "sleep 120")
    job_id = scheduler.submit(job)
    slurm_cluster.control("stop-controller")
    try:
        with pytest.raises(SchedulerUnavailable):
            scheduler.query([job_id], [job.name])
        with pytest.raises(SchedulerUnavailable):
            scheduler.submit(make_job(tmp_path, f"{slurm_job_prefix}while-down", "true"))
    finally:
        slurm_cluster.control("start-controller")
    # Back up: the job is still known, with its state.
    assert scheduler.query([job_id], [])[job_id].state.is_active


def test_the_nodes_of_a_job_come_from_sacct_expanded_by_scontrol() -> None:
    runner = ReplayRunner({"scontrol show config": recorded("scontrol_show_config"), "sacct": recorded("sacct_nodelist"),
                           "scontrol show hostnames": recorded("scontrol_show_hostnames")})
    assert SlurmScheduler(runner=runner).nodes_of("41") == ["vm", "vm-b"]  # the recording expanded `vm,vm-b`
    assert runner.calls[1] == ["sacct", "-n", "-X", "-P", "-j", "41", "-o", "NodeList"]
    assert runner.calls[2] == ["scontrol", "show", "hostnames", "vm"]
    never_ran = ReplayRunner({"scontrol show config": recorded("scontrol_show_config"),
                              "sacct": recorded("sacct_nodelist_never_ran")})
    assert SlurmScheduler(runner=never_ran).nodes_of("42") == [] and len(never_ran.calls) == 2  # nothing to expand
    assert slurm_parse.parse_node_list(recorded("squeue_nodelist").stdout) == "vm"


def test_a_submission_with_excluded_nodes_passes_them_to_sbatch(tmp_path: Path) -> None:
    seen: list[str] = []

    def submit(argv: Sequence[str]) -> CommandResult:
        seen.append(argv[2])
        return recorded("sbatch_plain")

    job = make_job(tmp_path, "j", "true")
    SlurmScheduler(runner=ReplayRunner({"submit": submit})).submit(job, exclude=["vm", "vm-b"])
    assert seen == [f"sbatch --exclude=vm,vm-b {job.sbatch_script}"]


def test_a_refusal_for_want_of_nodes_is_told_apart_only_when_nodes_were_excluded(tmp_path: Path) -> None:
    from orchestrator.scheduler.base import SubmitExcludedAll

    job = make_job(tmp_path, "j", "true")
    refused = ReplayRunner({"submit": recorded("sbatch_every_node_excluded")})
    with pytest.raises(SubmitExcludedAll):
        SlurmScheduler(runner=refused).submit(job, exclude=["vm"])
    with pytest.raises(SubmitError) as plain:  # the same words without an exclusion: the request itself is at fault
        SlurmScheduler(runner=refused).submit(job)
    assert not isinstance(plain.value, SubmitExcludedAll)


def test_the_scripts_own_exclusion_is_kept_beside_the_bad_nodes(tmp_path: Path) -> None:
    seen: list[str] = []

    def submit(argv: Sequence[str]) -> CommandResult:
        seen.append(argv[2])
        return recorded("sbatch_plain")

    job = make_job(tmp_path, "j", "true", "--exclude=gpu[01-02]")
    SlurmScheduler(runner=ReplayRunner({"submit": submit})).submit(job, exclude=["vm"])
    # On sbatch's command line the option replaces the script's: both lists go there.
    assert seen == [f"sbatch --exclude='gpu[01-02],vm' {job.sbatch_script}"]  # quoted: [ ] are shell globs


def test_a_pre_queued_submission_waits_on_the_given_one(tmp_path: Path) -> None:
    seen: list[str] = []

    def submit(argv: Sequence[str]) -> CommandResult:
        seen.append(argv[2])
        return recorded("sbatch_plain")

    job = make_job(tmp_path, "j", "true")
    scheduler = SlurmScheduler(runner=ReplayRunner({"submit": submit}))
    assert scheduler.can_chain(job)
    scheduler.submit(job, exclude=["vm"], after="41")
    assert seen == [f"sbatch --dependency=afterany:41 --exclude=vm {job.sbatch_script}"]


def test_a_cmd_that_hides_sbatch_is_never_chained(tmp_path: Path) -> None:
    # Without --dependency the "next" segment would run beside the current one: refused, nothing run.
    job = replace(make_job(tmp_path, "j", "true"), cmd="./submit.sh {sbatch_script}")
    runner = ReplayRunner({})
    scheduler = SlurmScheduler(runner=runner)
    assert not scheduler.can_chain(job)
    with pytest.raises(SubmitError, match="no sbatch word"):
        scheduler.submit(job, after="41")
    assert runner.calls == []
