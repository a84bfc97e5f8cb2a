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
