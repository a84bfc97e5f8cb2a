"""How an attempt ended as far as its checkpoints go: saved and exited on purpose, or killed mid-save.

The lines are Megatron's own, as megatron/training/checkpointing.py `save_checkpoint` and training.py
`checkpoint_and_decide_exit` / `print_datetime` format them (NVIDIA/Megatron-LM d98e8a64ddf34856e74b24714e3bedb2f5a39553;
older releases and Megatron-DeepSpeed print the same text without the timestamp prefix, as the examples here do).
"""

from __future__ import annotations

from orchestrator.jobs import Job
from orchestrator.job_state import JobState
from orchestrator.monitor.lifecycle import Facts, JobView, Transition, decide
from orchestrator.monitor.probes import OutputWatcher, SaveMarks, save_marks
from orchestrator.monitor.segment_end import save_ending
from orchestrator.scheduler.base import Observation, SchedulerState

SAVE_200 = ("[2026-12-07 06:40:01.123456] saving checkpoint at iteration     200 to /ckpt in torch format\n"
            "  [2026-12-07 06:40:09.654321] successfully saved checkpoint from iteration     200 to /ckpt "
            "[ t 1/1, gtp_remat 1/1, p 1/1 ]\n")
SAVE_300_STARTED = "[2026-12-07 07:10:01.000001] saving checkpoint at iteration     300 to /ckpt in torch format\n"
SAVE_300_FINISHED = ("  [2026-12-07 07:10:07.000002] successfully saved checkpoint from iteration     300 to /ckpt "
                     "[ t 1/1, gtp_remat 1/1, p 1/1 ]\n")
EXIT_ON_SIGTERM = "[exiting program after receiving SIGTERM.] datetime: 2026-12-07 07:10:08.000003 \n"
TIME_LIMIT = "slurmstepd-vm: error: *** JOB 9 ON vm CANCELLED AT 2026-12-07T07:10:30 DUE TO TIME LIMIT ***\n"


def _facts(tmp_path, text: str):
    log = tmp_path / "train.out"
    log.write_text(text)
    return OutputWatcher().facts(str(log))


def test_a_save_and_a_graceful_exit_in_this_run_read_as_saved_and_exited(tmp_path):
    first_run = " iteration      250/    1000 | lm loss: 3.1 |\n" + SAVE_200
    facts = _facts(tmp_path, first_run + " iteration      300/    1000 |\n" + SAVE_300_STARTED + SAVE_300_FINISHED
                   + EXIT_ON_SIGTERM)
    assert facts.saves.started == 300 and facts.saves.finished == 300
    assert save_ending(facts.saves, len(first_run)) == "saved iteration 300, then exiting program after receiving SIGTERM"
    # Exiting on its own clock (--exit-duration-in-mins) reads the same way.
    minutes = save_marks(b"[exiting program after 1430.5 minutes] datetime: 2026-12-07 07:10:08 \n", 10_000, facts.saves)
    assert save_ending(minutes, len(first_run)) == "saved iteration 300, then exiting program after 1430.5 minutes"


def test_a_save_begun_and_never_finished_in_this_run_reads_as_killed_mid_save(tmp_path):
    first_run = SAVE_200
    facts = _facts(tmp_path, first_run + SAVE_300_STARTED + TIME_LIMIT)
    assert save_ending(facts.saves, len(first_run)) == "killed while saving iteration 300: that save is incomplete"
    # With a whole save earlier in the same run, that one is named.
    assert save_ending(facts.saves, 0) == ("killed while saving iteration 300: that save is incomplete (the run's last "
                                           "whole save: iteration 200)")


def test_lines_of_an_earlier_attempt_or_no_save_at_all_say_nothing(tmp_path):
    facts = _facts(tmp_path, SAVE_200 + EXIT_ON_SIGTERM)
    assert save_ending(facts.saves, len(SAVE_200) + len(EXIT_ON_SIGTERM)) == ""  # all of it an earlier attempt's
    assert save_ending(SaveMarks(), 0) == ""
    # A save that finished, then a kill (no exit line): nothing to warn about, nothing graceful to report.
    assert save_ending(_facts(tmp_path, SAVE_200 + TIME_LIMIT).saves, 0) == ""


def test_the_monitor_names_the_ending_when_it_resubmits(tmp_path):
    job = Job(name="j", template="t", sbatch_script="j.sbatch", output_file="j.out", cmd="sbatch j.sbatch")
    view = JobView("j", JobState.RUNNING, scheduler_id="9", run_start="T0", run_output_offset=len(SAVE_200))
    killed = _facts(tmp_path, SAVE_200 + SAVE_300_STARTED + TIME_LIMIT)
    actions = decide(job, view, Facts(now=1.0, scheduler_known=True, output=killed,
                                      observation=Observation("9", "j", SchedulerState.TIMEOUT, 0)))
    reasons = [action.reason for action in actions if isinstance(action, Transition)]
    assert reasons == ["9 ended TIMEOUT (killed while saving iteration 300: that save is incomplete) without "
                       "termination: resubmitting"]
    graceful = _facts(tmp_path, SAVE_200 + SAVE_300_STARTED + SAVE_300_FINISHED + EXIT_ON_SIGTERM)
    actions = decide(job, view, Facts(now=1.0, scheduler_known=True, output=graceful,
                                      observation=Observation("9", "j", SchedulerState.COMPLETED, 0)))
    reasons = [action.reason for action in actions if isinstance(action, Transition)]
    assert reasons and reasons[0].startswith("9 ended COMPLETED (saved iteration 300, then exiting program after "
                                             "receiving SIGTERM)")
