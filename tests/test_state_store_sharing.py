"""The store on shared file systems: one writer (the lease holder), readers on a snapshot, no lock calls needed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orchestrator.job_state import JobState
from orchestrator.state import StateStore
from orchestrator.state import sqlite_files
from orchestrator.state.lease import LeaseLost, MonitorLease, break_lease


def _files(directory: Path) -> dict[str, tuple[int, int]]:
    return {path.name: (path.stat().st_size, path.stat().st_mtime_ns) for path in directory.iterdir()}


def test_readers_open_the_snapshot_and_never_write(tmp_path):
    store = StateStore.open(tmp_path)
    store.ensure_jobs(["a"])
    store.record_intent("a")
    store.close()
    before = _files(tmp_path)
    reader = StateStore.open_existing(tmp_path)
    assert reader.job("a").current is not None and reader.snapshot_time() is not None
    with pytest.raises(Exception):
        reader.set_state("a", JobState.QUEUED)
    reader.close()
    assert _files(tmp_path) == before  # not one byte, not one new file (no -wal, no -shm, no journal)


def test_the_snapshot_follows_each_write_session_and_a_reader_keeps_a_whole_one(tmp_path):
    store = StateStore.open(tmp_path)
    store.ensure_jobs(["a"])
    store.write_snapshot()
    early = StateStore.open_existing(tmp_path)
    store.ensure_jobs(["b"])
    store.write_snapshot()
    assert set(early.jobs()) == {"a"}  # the copy it opened, whole, though replaced meanwhile
    assert set(StateStore.open_existing(tmp_path).jobs()) == {"a", "b"}
    store.close()


def test_a_second_process_cannot_open_the_live_store(tmp_path):
    store = StateStore.open(tmp_path)
    store.ensure_jobs(["a"])
    code = textwrap.dedent("""
        import sys
        from orchestrator.errors import UserError
        from orchestrator.state import StateStore
        try:
            StateStore.open(sys.argv[1])
        except UserError as error:
            print(error)
            sys.exit(2)
    """)
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "another process holds it" in result.stdout
    assert len(result.stdout.strip().splitlines()) == 1 and "state.db" in result.stdout  # one line, naming the file
    store.close()


def test_without_posix_locks_the_writer_uses_dot_files_and_clears_a_dead_holders_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_files, "posix_locks_work", lambda directory: False)
    lease = MonitorLease.acquire(tmp_path)
    (tmp_path / "state.db.lock").mkdir()  # what unix-dotfile leaves when its holder is killed
    store = StateStore.open(tmp_path, guard=lease.confirm)
    store.ensure_jobs(["a"])
    assert (tmp_path / "state.db.lock").is_dir()  # ours now, for the connection's life
    store.close()
    assert not (tmp_path / "state.db.lock").exists()
    lease.release()
    assert set(StateStore.open_existing(tmp_path).jobs()) == {"a"}


def test_posix_locks_are_probed_in_the_folder(tmp_path):
    assert sqlite_files.posix_locks_work(tmp_path)  # a local ext4/tmpfs folder has them


def test_a_monitor_whose_lease_was_taken_writes_nothing_more(tmp_path, monkeypatch):
    monkeypatch.setattr("orchestrator.state.lease.CONFIRM_SECS", 0.0)  # as after a pause past the TTL
    lease = MonitorLease.acquire(tmp_path)
    store = StateStore.open(tmp_path, guard=lease.confirm)
    store.ensure_jobs(["a"])
    store.write_snapshot()
    break_lease(tmp_path)
    with pytest.raises(LeaseLost):
        store.set_state("a", JobState.QUEUED)
    snapshot = _files(tmp_path)["state.snapshot.db"]
    store.close()  # and leaves the snapshot to the new holder
    assert _files(tmp_path)["state.snapshot.db"] == snapshot
    assert StateStore.open_existing(tmp_path).job("a").state == JobState.WAITING


def test_mount_is_named_for_errors(tmp_path):
    assert sqlite_files.mount_of(tmp_path).endswith(")") and os.path.isabs(sqlite_files.mount_of(tmp_path).split(" ")[0])
