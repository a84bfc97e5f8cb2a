"""Facts the scheduler does not know: output files (incremental search, freeze) and flag commands (real shells)."""

from __future__ import annotations

import os

from orchestrator.monitor.probes import (
    SEARCH_OVERLAP_BYTES,
    OutputFacts,
    OutputWatcher,
    is_frozen,
    run_flag_command,
)


def test_is_frozen_needs_non_empty_output_unchanged_long_enough():
    facts = OutputFacts("10:1", 10)
    assert not is_frozen(facts, changed_at=100.0, now=104.9, freeze_secs=5)
    assert is_frozen(facts, changed_at=100.0, now=105.0, freeze_secs=5)
    assert not is_frozen(OutputFacts("0:1", 0), changed_at=0.0, now=1e9, freeze_secs=5)
    assert not is_frozen(OutputFacts(), changed_at=0.0, now=1e9, freeze_secs=5)
    assert not is_frozen(facts, changed_at=None, now=1e9, freeze_secs=5)


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
    assert watcher.facts(str(log), "") == OutputFacts(second.fingerprint, second.size, False)


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


def test_flag_commands_in_a_real_shell(tmp_path):
    assert run_flag_command("echo 1").flag
    assert not run_flag_command("echo 0").flag
    assert run_flag_command("echo checking; echo 1").flag  # the last word counts
    assert run_flag_command("test -e marker && echo 1 || echo 0", cwd=str(tmp_path)).flag is False
    (tmp_path / "marker").touch()
    assert run_flag_command("test -e marker && echo 1 || echo 0", cwd=str(tmp_path)).flag
    failed = run_flag_command("echo oops >&2; exit 3")
    assert not failed.flag and failed.error and "exit 3: oops" in failed.detail
    garbage = run_flag_command("echo yes")
    assert not garbage.flag and garbage.error and "not a number" in garbage.detail
    slow = run_flag_command("sleep 5; echo 1", timeout=0.5)
    assert not slow.flag and slow.error and "timed out" in slow.detail


def test_output_path_patterns(monkeypatch):
    from orchestrator.monitor.probes import resolve_output_path

    monkeypatch.setenv("USER", "alice")
    assert resolve_output_path("logs/run.out", None, "j") == "logs/run.out"
    assert resolve_output_path("logs/%x-%j.out", "123", "job") == "logs/job-123.out"
    assert resolve_output_path("logs/%x-%j.out", None, "job") is None  # no id yet: no file to look at
    assert resolve_output_path("logs/%u/%x.out", None, "job") == "logs/alice/job.out"
    assert resolve_output_path("logs/%8j%%.out", "42", "job") == "logs/00000042%.out"
