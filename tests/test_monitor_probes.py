"""Facts the scheduler does not know: output files (incremental search, runs, progress, failures)."""

from __future__ import annotations

import os

from orchestrator.monitor.probes import (
    SEARCH_OVERLAP_BYTES,
    OutputFacts,
    OutputWatcher,
    activity,
    has_job_id_pattern,
    is_frozen,
)

# Written by slurmstepd into the job's output when Slurm preempted it (recorded on the test cluster).
PREEMPTION_LINE = "slurmstepd-vm: error: *** JOB 5 ON vm CANCELLED AT 2026-11-23T20:31:31 DUE TO PREEMPTION ***\n"


def test_is_frozen_needs_activity_in_this_run_unchanged_long_enough():
    assert not is_frozen("bytes:10", changed_at=100.0, now=104.9, freeze_secs=5)
    assert is_frozen("bytes:10", changed_at=100.0, now=105.0, freeze_secs=5)
    assert not is_frozen(None, changed_at=0.0, now=1e9, freeze_secs=5)  # nothing written in this run
    assert not is_frozen("bytes:10", changed_at=None, now=1e9, freeze_secs=5)


def test_activity_counts_only_what_the_current_run_wrote():
    facts = OutputFacts("x", size=100, content_end=100)
    assert activity(facts, run_offset=0, progress_regex="") == "bytes:100"
    assert activity(facts, run_offset=100, progress_regex="") is None  # all of it is older than the run
    with_progress = OutputFacts("x", size=100, content_end=100, progress="7", progress_at=80)
    assert activity(with_progress, run_offset=50, progress_regex="it (\\d+)") == "progress:7"
    # Progress seen only in an earlier run: this run's own bytes count until it reports progress.
    assert activity(with_progress, run_offset=90, progress_regex="it (\\d+)") == "bytes:100"


def test_slurm_own_lines_are_not_the_jobs_output(tmp_path):
    log = tmp_path / "job.out"
    log.write_text("iteration 1\niteration 2\n")
    watcher = OutputWatcher()
    before = watcher.facts(str(log))
    with open(log, "a") as handle:
        handle.write(PREEMPTION_LINE)
        handle.write("slurmstepd: error: *** JOB 7 ON node3 CANCELLED AT 2026-01-01T00:00:00 DUE TO TIME LIMIT ***\n")
    after = watcher.facts(str(log))
    assert after.size > before.size and after.content_end == before.content_end == len("iteration 1\niteration 2\n")
    with open(log, "a") as handle:
        handle.write("start of the requeued run\n")
    assert watcher.facts(str(log)).content_end == log.stat().st_size


def test_progress_and_fail_regex_keep_their_last_match_and_its_offset(tmp_path):
    log = tmp_path / "job.out"
    log.write_text("iteration 1 lm loss 3.2\nwarning: slow\niteration 2 lm loss 3.1\n")
    watcher = OutputWatcher()
    facts = watcher.facts(str(log), progress_regex=r"iteration\s+(\d+)", fail_regex=r"lm loss: nan|CUDA error")
    assert facts.progress == "2" and facts.progress_at == len("iteration 1 lm loss 3.2\nwarning: slow\n")
    assert facts.fail_at == -1
    with open(log, "a") as handle:
        handle.write("warning: slow\n" * 3 + "iteration 3 lm loss: nan\npartial line without newl")
    facts = watcher.facts(str(log), progress_regex=r"iteration\s+(\d+)", fail_regex=r"lm loss: nan|CUDA error")
    assert facts.progress == "3" and facts.fail_line == "iteration 3 lm loss: nan"
    assert facts.content_end == facts.size  # a line being written is life too
    whole = watcher.facts(str(log), progress_regex=r"iteration\s+\d+")  # no group: the whole match
    assert whole.progress == "iteration 3"


def test_job_id_patterns_mean_one_file_per_submission():
    assert has_job_id_pattern("logs/%x-%j.out") and has_job_id_pattern("logs/%A_%a.out")
    assert not has_job_id_pattern("logs/%x.out") and not has_job_id_pattern("logs/100%%j.out")


def test_watcher_fingerprint_and_termination(tmp_path):
    log = tmp_path / "job.out"
    watcher = OutputWatcher()
    assert watcher.facts(str(log), "DONE") == OutputFacts()
    log.write_text("iteration 1\n")
    first = watcher.facts(str(log), "DONE")
    assert first.size == 12 and not first.termination_matched and first.fingerprint
    with open(log, "a") as handle:
        handle.write("after training is DONE\n")
    second = watcher.facts(str(log), "DONE")
    assert second.termination_matched and second.fingerprint != first.fingerprint
    plain = watcher.facts(str(log), "")
    assert (plain.fingerprint, plain.size, plain.termination_matched) == (second.fingerprint, second.size, False)


def test_watcher_reads_only_appended_bytes(tmp_path, monkeypatch):
    log = tmp_path / "job.out"
    log.write_text("x" * (5 * SEARCH_OVERLAP_BYTES))
    watcher = OutputWatcher()
    assert not watcher.facts(str(log), "DONE").termination_matched
    reads = []
    real_open = open

    def counting_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        original_read = handle.read
        handle.read = lambda *a: reads.append(len(data := original_read(*a))) or data
        return handle

    monkeypatch.setattr("builtins.open", counting_open)
    with real_open(log, "a") as handle:
        handle.write("training DO")
    watcher.facts(str(log), "DONE")
    with real_open(log, "a") as handle:
        handle.write("NE\n")  # the match straddles two reads
    assert watcher.facts(str(log), "DONE").termination_matched
    assert max(reads) <= SEARCH_OVERLAP_BYTES + 16


def test_watcher_rescans_a_rewritten_file(tmp_path):
    log = tmp_path / "job.out"
    log.write_text("a" * 1000 + "\n")
    watcher = OutputWatcher()
    assert not watcher.facts(str(log), "^DONE").termination_matched
    log.write_text("DONE\n")  # a new attempt truncated the log
    os.utime(log, ns=(1, 1))
    assert watcher.facts(str(log), "(?m)^DONE").termination_matched


def test_output_path_patterns(monkeypatch):
    from orchestrator.monitor.probes import resolve_output_path

    monkeypatch.setenv("USER", "alice")
    assert resolve_output_path("logs/run.out", None, "j") == "logs/run.out"
    assert resolve_output_path("logs/%x-%j.out", "123", "job") == "logs/job-123.out"
    assert resolve_output_path("logs/%x-%j.out", None, "job") is None  # no id yet: no file to look at
    assert resolve_output_path("logs/%u/%x.out", None, "job") == "logs/alice/job.out"
    assert resolve_output_path("logs/%8j%%.out", "42", "job") == "logs/00000042%.out"
