"""How the store's SQLite files are opened on shared file systems (NFS, Lustre, GPFS, BeeGFS).

What SQLite documents, and what follows from it:
- WAL's wal-index is shared memory, so "all processes using a database must be on the same host"
  (https://sqlite.org/wal.html section 1). With `PRAGMA locking_mode=EXCLUSIVE` set before the first
  access, no shared memory is used at all and only that one connection may use the database (section 8).
  The monitor lease (`state.lease`) already makes its holder the only process that opens the live store,
  from whichever host: it opens it that way, so the store never depends on shared memory between hosts.
- Readers on any host (`orch status`, `--watch`, `--history`, `results`, `report`) never open the live
  store: they open the snapshot the writer replaces atomically (temp file + rename) after every cycle,
  with `immutable=1`, which makes SQLite take no lock and write nothing (https://sqlite.org/uri.html,
  "immutable"). A reader can therefore never damage the store, and a snapshot is always one whole
  state of it.
- Where lock calls fail (Lustre `noflock`: ENOSYS), SQLite's default VFS gets "disk I/O error". There
  the writer uses the built-in `unix-dotfile` VFS (https://sqlite.org/vfs.html), which locks by
  creating a `state.db.lock` directory (mkdir is atomic on every one of these file systems). A monitor
  killed with the lock held leaves that directory behind; the next lease holder removes it, since only
  a lease holder ever opens the live store.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import sqlite3
from pathlib import Path
from urllib.parse import quote

from orchestrator.errors import UserError

# errnos that mean "this file system has no (usable) POSIX locks", not "someone holds the lock".
NO_LOCK_ERRNOS = {errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK, errno.EINVAL}
_PROBE_NAME = ".lock-probe"


def posix_locks_work(directory: Path) -> bool:
    """Can fcntl locks be taken in `directory`? (False under Lustre `noflock` and alike.)"""
    path = directory / _PROBE_NAME
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.lockf(descriptor, fcntl.LOCK_UN)
        return True
    except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EACCES):
            return True  # held by someone else: locks work
        if error.errno in NO_LOCK_ERRNOS:
            return False
        raise
    finally:
        os.close(descriptor)


def mount_of(path: Path) -> str:
    """`MOUNTPOINT (FSTYPE)` of the mount holding `path`, for error messages."""
    best, fstype = "/", "?"
    target = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as handle:
            for line in handle:
                fields = line.split()
                point = fields[4].replace("\\040", " ")
                separator = fields.index("-")
                if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                    best, fstype = point, fields[separator + 1]
    except (OSError, ValueError, IndexError):
        pass
    return f"{best} ({fstype})"


def open_writer(path: Path, lease_held: bool) -> sqlite3.Connection:
    """The live store, for its one writer: WAL without shared memory, POSIX locks or dot-file locks."""
    vfs = "" if posix_locks_work(path.parent) else "unix-dotfile"
    if vfs and lease_held:
        _remove_stale_dotlock(path)
    uri = f"file:{quote(str(path))}" + (f"?vfs={vfs}" if vfs else "")
    try:
        db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=5.0)
        db.execute("PRAGMA locking_mode=EXCLUSIVE")  # before the first access: no -shm, one connection only
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process kill
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # takes the lock now, not mid-cycle
    except sqlite3.OperationalError as error:
        raise UserError(f"{path}: the campaign store cannot be opened on {mount_of(path)}: {error}"
                        + ("; another process holds it (only the campaign's monitor may open it)"
                           if "locked" in str(error) else "")) from None
    return db


def _remove_stale_dotlock(path: Path) -> None:
    """unix-dotfile's lock is the directory `state.db.lock`; held by nobody once we hold the lease."""
    lock = path.with_name(path.name + ".lock")
    if lock.is_dir():
        shutil.rmtree(lock, ignore_errors=True)
    elif lock.exists():
        lock.unlink(missing_ok=True)


def open_reader(path: Path, immutable: bool) -> sqlite3.Connection:
    """A snapshot (immutable: no lock, no write, on any host) or, for a store an older orch left without
    one, the live file read-only."""
    uri = f"file:{quote(str(path))}?mode=ro" + ("&immutable=1" if immutable else "")
    try:
        db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=5.0)
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as error:
        raise UserError(f"{path}: cannot read the campaign state ({error}); `orch run` on the campaign's "
                        "monitor host writes a fresh snapshot") from None
    return db


def write_snapshot(db: sqlite3.Connection, destination: Path, facts: dict[str, str]) -> None:
    """Copy the live store to `destination` atomically: a reader sees the old copy or the new, whole."""
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    # A private temp file needs no lock (`unix-none`): this works on a file system without locks too.
    copy = sqlite3.connect(f"file:{quote(str(temporary))}?vfs=unix-none", uri=True, isolation_level=None)
    try:
        copy.execute("PRAGMA locking_mode=EXCLUSIVE")  # the copy arrives in WAL mode: no -shm for it either
        db.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")  # a plain file: readable alone, without -wal or -shm
        copy.executemany("INSERT INTO campaign(key, value) VALUES (?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value", list(facts.items()))
    finally:
        copy.close()
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, destination)
