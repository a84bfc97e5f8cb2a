"""A campaign's SQLite store (`state.db` in its state folder, see `state.campaign`): jobs, their submission attempts, and an event log.

Every write commits at once (autocommit), so a monitor killed at any instant leaves a store that
says exactly what was done. Only the campaign's lease holder opens the live store (`StateStore.open`);
every reader opens the snapshot it writes after each cycle (`StateStore.open_existing`); why, and how
the files are opened on shared file systems: `state.sqlite_files`. The rule that makes restarts safe: an attempt row (the intent to
submit) is committed BEFORE the submit command runs, and its scheduler id after. An intent without
an id is resolved on the next cycle by asking the scheduler for active jobs by name.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from orchestrator.job_state import JobState, check_transition
from orchestrator.state.records import AttemptRecord, JobRecord, attempt_from_row
from orchestrator.state.sqlite_files import open_reader, open_writer, write_snapshot

STATE_DIR_NAME = ".orch"
DB_NAME = "state.db"
SNAPSHOT_NAME = "state.snapshot.db"
FIRST_SNAPSHOT_WAIT_SECS = 3.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    start_attempts INTEGER NOT NULL DEFAULT 0,
    start_ready INTEGER NOT NULL DEFAULT 0,
    output_fingerprint TEXT,
    output_changed_at REAL,
    last_termination_probe REAL,
    last_start_probe REAL,
    reason TEXT NOT NULL DEFAULT '',
    updated_at REAL NOT NULL,
    run_start TEXT,
    run_output_offset INTEGER NOT NULL DEFAULT 0,
    end_progress TEXT
);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL REFERENCES jobs(name),
    scheduler_id TEXT,
    intent_at REAL NOT NULL,
    submitted_at REAL,
    started_at REAL,
    ended_at REAL,
    final_state TEXT,
    exit_code INTEGER,
    adopted INTEGER NOT NULL DEFAULT 0,
    cancel_reason TEXT,
    elapsed_secs REAL,
    gpus INTEGER,
    estimate_gpus INTEGER,
    estimate_hours REAL,
    provenance TEXT,
    standby INTEGER NOT NULL DEFAULT 0,
    after_id TEXT,
    array_script TEXT,
    array_index INTEGER
);
CREATE INDEX IF NOT EXISTS attempts_open ON attempts(job) WHERE ended_at IS NULL;
CREATE TABLE IF NOT EXISTS campaign (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    job TEXT,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
"""


# Columns added after the first release: a store written by an older orch gains them when opened.
_ADDED_COLUMNS = {
    "jobs": {"run_start": "TEXT", "run_output_offset": "INTEGER NOT NULL DEFAULT 0", "end_progress": "TEXT"},
    "attempts": {"cancel_reason": "TEXT", "elapsed_secs": "REAL", "gpus": "INTEGER", "estimate_gpus": "INTEGER",
                 "estimate_hours": "REAL", "provenance": "TEXT", "standby": "INTEGER NOT NULL DEFAULT 0",
                 "after_id": "TEXT", "array_script": "TEXT", "array_index": "INTEGER"},
}


class StateConflict(Exception):
    """The job's state changed under the caller (another orch command wrote it)."""


def state_dir(workdir: str | Path = ".") -> Path:
    """The folder-wide `.orch/` (each campaign's own state lives below it: `state.campaign.campaign_dir`)."""
    return Path(workdir) / STATE_DIR_NAME


class StateStore:
    """One campaign's store: `StateStore.open(campaign_dir)` for its writer (the monitor lease's holder),
    `StateStore.open_existing(campaign_dir)` for every reader (a snapshot: never written, any host)."""

    def __init__(self, path: Path, clock=time.time, guard: Callable[[], None] | None = None,
                 reader: bool = False, _db: sqlite3.Connection | None = None) -> None:
        self.path = path
        self._clock = clock
        self._guard = guard
        self.reader = reader
        # isolation_level=None: autocommit; every statement is durable when it returns.
        self._db = _db if _db is not None else open_writer(path, lease_held=guard is not None)
        self._db.row_factory = sqlite3.Row
        self._snapshot_changes = -1
        self._fenced = False
        if not reader:
            self._db.executescript(_SCHEMA)
            self._add_missing_columns()
            self.write_snapshot()

    def _add_missing_columns(self) -> None:
        for table, columns in _ADDED_COLUMNS.items():
            present = {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for column, declaration in columns.items():
                if column not in present:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    @classmethod
    def open(cls, directory: str | Path, clock=time.time, guard: Callable[[], None] | None = None) -> StateStore:
        """The live store in `directory` (a campaign's state folder), created if need be, for its one writer.

        `guard` (the monitor lease's `confirm`) runs before every write and raises when the lease is lost,
        so a monitor that was paused past the lease's TTL and taken over writes nothing more."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory / DB_NAME, clock=clock, guard=guard)

    @classmethod
    def open_existing(cls, directory: str | Path) -> StateStore | None:
        """For readers (`orch status`, results, report): the latest snapshot; None when no monitor ever ran."""
        directory = Path(directory)
        snapshot, live = directory / SNAPSHOT_NAME, directory / DB_NAME
        deadline = time.monotonic() + FIRST_SNAPSHOT_WAIT_SECS
        while live.exists() and not snapshot.exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # a monitor starting this moment: its first snapshot follows the store's creation
        if snapshot.exists():
            return cls(snapshot, reader=True, _db=open_reader(snapshot, immutable=True))
        if live.exists():  # left by an orch from before snapshots
            return cls(live, reader=True, _db=open_reader(live, immutable=False))
        return None

    def snapshot_time(self) -> float | None:
        """When the writer wrote the snapshot this reader reads (None for the live store)."""
        value = self.campaign_value("snapshot_at") if self.reader else None
        return float(value) if value else None

    def write_snapshot(self) -> None:
        """Replace the readers' snapshot with the store as it is now (skipped when nothing changed)."""
        if self.reader or self._db.total_changes == self._snapshot_changes:
            return
        self._check()
        write_snapshot(self._db, self.path.with_name(SNAPSHOT_NAME), {"snapshot_at": repr(self._clock())})
        self._snapshot_changes = self._db.total_changes

    def _check(self) -> None:
        """Before a write: only the lease holder writes (the guard raises when the lease was lost)."""
        if self.reader:
            raise sqlite3.OperationalError("a snapshot of the campaign store is read-only")
        if self._guard is not None:
            try:
                self._guard()
            except BaseException:
                self._fenced = True  # and close() leaves the snapshot to the new holder
                raise

    def close(self) -> None:
        try:
            if not self.reader and not self._fenced:
                self.write_snapshot()
        finally:
            self._db.close()

    # ------------------------------------------------------------ jobs

    def ensure_jobs(self, names: Iterable[str]) -> None:
        self._check()
        now = self._clock()
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO jobs(name, state, updated_at) VALUES (?, ?, ?)",
                [(name, JobState.WAITING.value, now) for name in names],
            )

    def jobs(self, names: Iterable[str] | None = None) -> dict[str, JobRecord]:
        """Job records (with their current attempt), keyed by name."""
        wanted = None if names is None else set(names)
        current: dict[str, AttemptRecord] = {}
        standby: dict[str, AttemptRecord] = {}
        counts: dict[str, int] = {}
        for row in self._db.execute("SELECT * FROM attempts WHERE ended_at IS NULL ORDER BY id"):
            (standby if row["standby"] else current)[row["job"]] = attempt_from_row(row)
        last_ids: dict[str, str] = {}
        for row in self._db.execute("SELECT job, COUNT(*) AS n FROM attempts GROUP BY job"):
            counts[row["job"]] = row["n"]
        # A pre-queued segment that never became the current attempt ran nothing of the job's: not its last id.
        for row in self._db.execute("SELECT job, scheduler_id FROM attempts WHERE scheduler_id IS NOT NULL AND standby = 0 "
                                    "ORDER BY id"):
            last_ids[row["job"]] = row["scheduler_id"]
        records = {}
        for row in self._db.execute("SELECT * FROM jobs"):
            if wanted is not None and row["name"] not in wanted:
                continue
            records[row["name"]] = JobRecord(
                name=row["name"],
                state=JobState(row["state"]),
                consecutive_failures=row["consecutive_failures"],
                start_attempts=row["start_attempts"],
                start_ready=bool(row["start_ready"]),
                output_fingerprint=row["output_fingerprint"],
                output_changed_at=row["output_changed_at"],
                last_termination_probe=row["last_termination_probe"],
                last_start_probe=row["last_start_probe"],
                reason=row["reason"],
                updated_at=row["updated_at"],
                current=current.get(row["name"]),
                attempts=counts.get(row["name"], 0),
                last_scheduler_id=last_ids.get(row["name"]),
                run_start=row["run_start"],
                run_output_offset=row["run_output_offset"],
                end_progress=row["end_progress"],
                standby=standby.get(row["name"]),
            )
        return records

    def job(self, name: str) -> JobRecord:
        return self.jobs([name])[name]

    def set_state(self, name: str, state: JobState, reason: str = "", expected: JobState | None = None) -> JobState:
        """Move a job to `state` if the life cycle allows it; returns the state it had.

        With `expected`, raise StateConflict instead when another process (`orch cancel`) moved the
        job since the caller read it: its decision was made on stale facts.
        """
        self._check()
        with self._transaction():
            old = JobState(self._db.execute("SELECT state FROM jobs WHERE name = ?", (name,)).fetchone()["state"])
            if expected is not None and old != expected:
                raise StateConflict(f"{name} is {old.value}, not {expected.value}")
            check_transition(old, state)
            self._db.execute("UPDATE jobs SET state = ?, reason = ?, updated_at = ? WHERE name = ?",
                             (state.value, reason, self._clock(), name))
        return old

    def update_job(self, name: str, **fields: object) -> None:
        """Bookkeeping columns (counters, output fingerprint, probe times); never `state`."""
        self._check()
        allowed = {"consecutive_failures", "start_attempts", "start_ready", "output_fingerprint", "output_changed_at",
                   "last_termination_probe", "last_start_probe", "end_progress"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"not a bookkeeping column: {sorted(unknown)}")
        if not fields:
            return
        columns = ", ".join(f"{key} = ?" for key in fields)
        self._db.execute(f"UPDATE jobs SET {columns} WHERE name = ?", (*fields.values(), name))

    def bump(self, name: str, column: str) -> int:
        """Increment a counter column; returns the new value."""
        self._check()
        if column not in ("consecutive_failures", "start_attempts"):
            raise ValueError(column)
        with self._transaction():
            self._db.execute(f"UPDATE jobs SET {column} = {column} + 1 WHERE name = ?", (name,))
            return self._db.execute(f"SELECT {column} FROM jobs WHERE name = ?", (name,)).fetchone()[0]

    # ------------------------------------------------------------ attempts

    def record_intent(self, name: str, output_offset: int = 0, estimate_gpus: int | None = None,
                      estimate_hours: float | None = None, provenance: dict[str, Any] | None = None,
                      after_id: str | None = None, array_task: tuple[str, int] | None = None) -> int:
        """Commit the intent to submit (an attempt with no id yet) and return its row id. Call BEFORE submitting.

        `output_offset`: the output file's size now; what it holds already is not the new attempt's.
        The estimate and the provenance are committed with the intent, so even a submission whose
        monitor was killed before it learned the id says what it ran with. With `after_id` the attempt is
        the next segment, pre-queued behind that submission: the current run stays the current one. With
        `array_task` (driver script, index) it is that task of an array: what finds it again after a kill.
        """
        self._check()
        with self._transaction():
            cursor = self._db.execute(
                "INSERT INTO attempts(job, intent_at, estimate_gpus, estimate_hours, provenance, standby, after_id, "
                "array_script, array_index) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, self._clock(), estimate_gpus, estimate_hours,
                 json.dumps(provenance, sort_keys=True) if provenance is not None else None,
                 int(after_id is not None), after_id, *(array_task or (None, None))))
            if after_id is None:
                self._reset_run(name, output_offset)
        return int(cursor.lastrowid)

    def promote_standby(self, name: str, output_offset: int) -> None:
        """The pre-queued segment becomes the current attempt (its predecessor's attempt is closed first)."""
        self._check()
        with self._transaction():
            if self._db.execute("SELECT 1 FROM attempts WHERE job = ? AND ended_at IS NULL AND standby = 0",
                                (name,)).fetchone() is not None:
                raise StateConflict(f"{name}: its current attempt is still open")
            self._db.execute("UPDATE attempts SET standby = 0 WHERE job = ? AND ended_at IS NULL AND standby = 1",
                             (name,))
            self._reset_run(name, output_offset)

    def discard_intent(self, attempt_id: int) -> None:
        """Forget an intent the scheduler answered with a definite "not submitted" (a queue limit)."""
        self._check()
        self._db.execute("DELETE FROM attempts WHERE id = ? AND scheduler_id IS NULL", (attempt_id,))

    def record_submitted(self, attempt_id: int, scheduler_id: str) -> None:
        self._check()
        self._db.execute("UPDATE attempts SET scheduler_id = ?, submitted_at = ? WHERE id = ?",
                         (scheduler_id, self._clock(), attempt_id))

    def record_adopted(self, name: str, scheduler_id: str, output_offset: int = 0, standby: bool = False) -> int:
        """Make an active submission found by name the job's current attempt (filling an open intent if any);
        with `standby`, fill the pre-queued segment's open intent."""
        self._check()
        now = self._clock()
        with self._transaction():
            row = self._db.execute("SELECT id FROM attempts WHERE job = ? AND ended_at IS NULL AND scheduler_id IS NULL "
                                   "AND standby = ?", (name, int(standby))).fetchone()
            if row is not None:
                self._db.execute("UPDATE attempts SET scheduler_id = ?, submitted_at = ?, adopted = 1 WHERE id = ?",
                                 (scheduler_id, now, row["id"]))
                return int(row["id"])
            cursor = self._db.execute(
                "INSERT INTO attempts(job, scheduler_id, intent_at, submitted_at, adopted, standby) VALUES (?, ?, ?, ?, 1, ?)",
                (name, scheduler_id, now, now, int(standby)))
            if not standby:
                self._reset_run(name, output_offset)
            return int(cursor.lastrowid)

    def _reset_run(self, name: str, output_offset: int) -> None:
        self._db.execute("UPDATE jobs SET run_start = NULL, run_output_offset = ? WHERE name = ?", (output_offset, name))

    def start_run(self, name: str, start_key: str, output_offset: int) -> None:
        """The current attempt (re)started running: a first run, or the same id again after a requeue."""
        self._check()
        with self._transaction():
            self._db.execute("UPDATE jobs SET run_start = ?, run_output_offset = ? WHERE name = ?",
                             (start_key, output_offset, name))
            self._db.execute("UPDATE attempts SET started_at = ? WHERE job = ? AND ended_at IS NULL AND started_at IS NULL "
                             "AND standby = 0",
                             (self._clock(), name))

    def mark_cancelled(self, name: str, reason: str) -> None:
        """The monitor cancelled the current attempt for `reason`; its ending will count as a failure."""
        self._check()
        self._db.execute("UPDATE attempts SET cancel_reason = ? WHERE job = ? AND ended_at IS NULL AND standby = 0",
                         (reason, name))

    def end_attempt(self, name: str, final_state: str, exit_code: int | None = None,
                    elapsed_secs: float | None = None, gpus: int | None = None, standby: bool = False) -> None:
        """Close the current attempt (with `standby`: the pre-queued one); `elapsed_secs` and `gpus` are the
        scheduler's figures for the ledger."""
        self._check()
        self._db.execute(
            "UPDATE attempts SET ended_at = ?, final_state = ?, exit_code = ?, elapsed_secs = COALESCE(?, elapsed_secs), "
            "gpus = COALESCE(?, gpus) WHERE job = ? AND ended_at IS NULL AND standby = ?",
            (self._clock(), final_state, exit_code, elapsed_secs, gpus, name, int(standby)))

    def record_usage(self, name: str, elapsed_secs: float | None, gpus: int | None) -> None:
        """The current attempt's running time and GPUs so far (for the ledger while it runs)."""
        self._check()
        self._db.execute("UPDATE attempts SET elapsed_secs = COALESCE(?, elapsed_secs), gpus = COALESCE(?, gpus) "
                         "WHERE job = ? AND ended_at IS NULL AND standby = 0", (elapsed_secs, gpus, name))

    def scheduler_ids(self) -> set[str]:
        """Every scheduler id this campaign ever recorded (its own submissions, finished or not)."""
        return {row[0] for row in self._db.execute("SELECT scheduler_id FROM attempts WHERE scheduler_id IS NOT NULL")}

    def attempts(self, name: str | None = None) -> list[AttemptRecord]:
        if name is None:
            rows = self._db.execute("SELECT * FROM attempts ORDER BY id")
        else:
            rows = self._db.execute("SELECT * FROM attempts WHERE job = ? ORDER BY id", (name,))
        return [attempt_from_row(row) for row in rows]

    # ------------------------------------------------------------ campaign facts

    def campaign_value(self, key: str) -> str | None:
        """A fact about the campaign as a whole (e.g. `scheduler`: the backend its jobs were submitted to)."""
        row = self._db.execute("SELECT value FROM campaign WHERE key = ?", (key,)).fetchone()
        return row["value"] if row else None

    def set_campaign_value(self, key: str, value: str) -> None:
        self._check()
        self._db.execute("INSERT INTO campaign(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                         (key, value))

    # ------------------------------------------------------------ events

    def log_event(self, job: str | None, kind: str, message: str) -> None:
        self._check()
        self._db.execute("INSERT INTO events(time, job, kind, message) VALUES (?, ?, ?, ?)",
                         (self._clock(), job, kind, message))

    def events(self, job: str | None = None, kind: str | None = None) -> list[tuple[float, str | None, str, str]]:
        query, args = "SELECT time, job, kind, message FROM events WHERE 1=1", []
        if job is not None:
            query, args = query + " AND job = ?", [*args, job]
        if kind is not None:
            query, args = query + " AND kind = ?", [*args, kind]
        return [tuple(row) for row in self._db.execute(query + " ORDER BY id", args)]

    # ------------------------------------------------------------ helpers

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT on an autocommit connection (several statements, one durable step)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
