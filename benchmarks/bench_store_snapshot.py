"""What the readers' snapshot costs the monitor: `state.snapshot.db` written after every cycle (state/sqlite_files.py).

A store of 1,000 jobs with 5 attempts and 20 events each (a large campaign after weeks) is built once; then
it prints the time of one snapshot (backup API to a temp file, fsync, rename), of a skipped one (nothing
changed), and of a reader's open + read of every job, best of 5. Run: `.venv/bin/python benchmarks/bench_store_snapshot.py`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from orchestrator.state import StateStore
from timing import best_of

JOBS, ATTEMPTS, EVENTS = 1000, 5, 20


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        store = StateStore.open(directory)
        names = [f"job{i}" for i in range(JOBS)]
        store.ensure_jobs(names)
        for name in names:
            for attempt in range(ATTEMPTS):
                store.record_submitted(store.record_intent(name, provenance={"script_sha256": "0" * 64}), str(attempt))
                store.end_attempt(name, "TIMEOUT", 0, 3600.0, 8)
            for event in range(EVENTS):
                store.log_event(name, "state", f"event {event} of {name}: running -> waiting")
        size = (directory / "state.db").stat().st_size

        def snapshot() -> None:
            store.log_event(None, "tick", "one change")  # so the snapshot is not skipped
            store.write_snapshot()

        written = best_of(5, snapshot)
        skipped = best_of(5, store.write_snapshot)

        def read() -> None:
            reader = StateStore.open_existing(directory)
            reader.jobs()
            reader.close()

        read_time = best_of(5, read)
        store.close()
    print(f"store of {JOBS} jobs x {ATTEMPTS} attempts x {EVENTS} events: {size / 1e6:.1f} MB")
    print(f"snapshot written: {written * 1000:.1f} ms; skipped (no change): {skipped * 1e6:.0f} us")
    print(f"reader open + every job: {read_time * 1000:.1f} ms")


if __name__ == "__main__":
    main()
