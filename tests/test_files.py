"""Small state files written whole and updated under a lock (`orchestrator.files`), by several processes at once."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from orchestrator.files import read_json, update_json


def _add_keys(path: str, prefix: str, count: int) -> None:
    for index in range(count):
        update_json(path, lambda document: {**(document or {}), f"{prefix}{index}": index})


def test_concurrent_updates_lose_no_change(tmp_path: Path):
    path = tmp_path / "state.json"
    context = multiprocessing.get_context("spawn")  # fresh interpreters, as two orch commands would be
    writers = [context.Process(target=_add_keys, args=(str(path), prefix, 40)) for prefix in ("a", "b", "c")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
        assert writer.exitcode == 0
    assert len(read_json(path)) == 120  # without the lock, a read-modify-write race drops keys


def test_a_missing_or_foreign_file_reads_as_none(tmp_path: Path):
    assert read_json(tmp_path / "absent.json") is None
    (tmp_path / "foreign.json").write_text("not json {")
    assert read_json(tmp_path / "foreign.json") is None
    assert update_json(tmp_path / "foreign.json", lambda document: {"was": document}) == {"was": None}
    assert read_json(tmp_path / "foreign.json") == {"was": None}
    assert not list(tmp_path.glob(".foreign.json.*.tmp"))  # no temporary file left behind


def test_a_whole_write_is_on_disk_before_its_rename_and_the_rename_after(tmp_path: Path, monkeypatch):
    """fsync of the new content, then the rename, then fsync of the folder: a host crash leaves the old file or the
    whole new one, never the new name on empty or partial content."""
    import os

    from orchestrator import files

    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor: int) -> None:
        calls.append("fsync dir" if os.path.isdir(f"/proc/self/fd/{descriptor}") else "fsync file")
        real_fsync(descriptor)

    def replace(source, target) -> None:
        calls.append("rename")
        real_replace(source, target)

    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(files.os, "replace", replace)
    files.write_atomically(tmp_path / "tracker.txt", "iter_0000100\n")
    assert calls == ["fsync file", "rename", "fsync dir"]
    assert (tmp_path / "tracker.txt").read_text() == "iter_0000100\n"
    assert [p.name for p in tmp_path.iterdir()] == ["tracker.txt"]  # no temporary file left
