"""The SQLite store: intent before submit, reconcile after a kill, the one-monitor lock."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from orchestrator.errors import UserError
from orchestrator.job_state import JobState, TransitionError
from orchestrator.monitor.lifecycle import view_of
from orchestrator.state import StateStore, acquire_monitor_lock


def test_schema_is_created_in_the_campaign_folder_with_wal(tmp_path):
    store = StateStore.open(tmp_path / "c")
    assert (tmp_path / "c" / "state.db").exists()
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert not (tmp_path / "c" / "state.db-shm").exists()  # exclusive locking mode: no shared memory
    store.ensure_jobs(["a", "b"])
    store.ensure_jobs(["a"])  # idempotent
    assert {name: r.state for name, r in store.jobs().items()} == {"a": JobState.WAITING, "b": JobState.WAITING}


def test_intent_is_durable_before_the_id(tmp_path):
    store = StateStore.open(tmp_path)
    store.ensure_jobs(["a"])
    attempt = store.record_intent("a")
    store.close()
    # The next writer (a restarted monitor) finds the intent.
    store = StateStore.open(tmp_path)
    view = view_of(store.job("a"))
    assert view.pending_intent and view.scheduler_id is None
    store.record_submitted(attempt, "4242")
    store.close()
    view = view_of(StateStore.open_existing(tmp_path).job("a"))  # and so does a reader, from the snapshot
    assert not view.pending_intent and view.scheduler_id == "4242"


def test_adoption_fills_an_open_intent(tmp_path):
    store = StateStore.open(tmp_path)
    store.ensure_jobs(["a", "b"])
    store.record_intent("a")
    store.record_adopted("a", "77")
    store.record_adopted("b", "78")  # no intent: a new adopted attempt
    attempts = store.attempts()
    assert [(a.job, a.scheduler_id, a.adopted) for a in attempts] == [("a", "77", True), ("b", "78", True)]
    assert store.job("a").attempts == 1


def test_end_attempt_closes_the_current_one(tmp_path):
    store = StateStore.open(tmp_path)
    store.ensure_jobs(["a"])
    store.record_submitted(store.record_intent("a"), "1")
    store.start_run("a", "T0", 0)
    store.end_attempt("a", "TIMEOUT", 0)
    record = store.job("a")
    assert record.current is None and record.attempts == 1
    (attempt,) = store.attempts("a")
    assert attempt.final_state == "TIMEOUT" and attempt.started_at is not None and attempt.ended_at is not None


def test_transitions_are_checked(tmp_path):
    store = StateStore.open(tmp_path)
    store.ensure_jobs(["a"])
    assert store.set_state("a", JobState.QUEUED) == JobState.WAITING
    store.set_state("a", JobState.DONE, "finished")
    with pytest.raises(TransitionError):
        store.set_state("a", JobState.RUNNING)
    assert store.job("a").state == JobState.DONE and store.job("a").reason == "finished"


def test_counters_and_bookkeeping(tmp_path):
    store = StateStore.open(tmp_path)
    store.ensure_jobs(["a"])
    assert store.bump("a", "consecutive_failures") == 1
    assert store.bump("a", "consecutive_failures") == 2
    store.update_job("a", consecutive_failures=0, output_fingerprint="3:4", output_changed_at=5.0)
    record = store.job("a")
    assert (record.consecutive_failures, record.output_fingerprint, record.output_changed_at) == (0, "3:4", 5.0)
    with pytest.raises(ValueError):
        store.update_job("a", state="done")


_KILLED_BETWEEN_SUBMIT_AND_ID = textwrap.dedent("""
    import os, signal, sys
    from orchestrator.state import StateStore
    store = StateStore.open(sys.argv[1])
    store.ensure_jobs(["a"])
    store.record_intent("a")
    # ... the submit command ran here and the scheduler took the job ...
    os.kill(os.getpid(), signal.SIGKILL)  # killed before the id is written
""")


def test_kill_between_submit_and_id_write_leaves_a_recoverable_intent(tmp_path):
    result = subprocess.run([sys.executable, "-c", _KILLED_BETWEEN_SUBMIT_AND_ID, str(tmp_path)])
    assert result.returncode == -signal.SIGKILL
    view = view_of(StateStore.open(tmp_path).job("a"))
    # What the next monitor needs in order to look the job up by name instead of submitting again.
    assert view.pending_intent and view.state == JobState.WAITING


def _hold_lock(workdir: str, ready, release) -> None:
    lock = acquire_monitor_lock(workdir)
    ready.set()
    release.wait(30)
    lock.release()


def test_second_monitor_is_refused_and_a_dead_one_frees_the_lock(tmp_path):
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(UserError, match="already monitoring"):
            acquire_monitor_lock(tmp_path)
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # dies without releasing: the OS frees the lock
        holder.join(30)
    with acquire_monitor_lock(tmp_path):
        pass
