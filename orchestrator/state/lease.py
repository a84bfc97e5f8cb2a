"""One monitor per campaign whatever the host: a lease file that needs no flock or fcntl.

`monitor.lease` in the campaign's state folder says who monitors it: host, pid, boot id, a random token, a
generation and the holder's last heartbeat. File locks do not tell two login nodes apart on Lustre with
`localflock` or BeeGFS's default (each node grants its own), and fail with ENOSYS under Lustre `noflock`;
`link()` of a fully written file onto the lease name is atomic and exclusive on NFS, Lustre, GPFS and BeeGFS
(it fails with EEXIST when the name exists), so readers never see a half-written lease.

- Acquire: link a new lease into place; if one is there, it is taken over only when it is stale: its holder
  ran on this host and is gone (pid dead, or the host rebooted: another boot id), or its heartbeat is older
  than the TTL (default 10 minutes: longer than a parallel file system's stalls). Otherwise refused, naming
  the holder's host, pid and heartbeat age. A takeover renames the stale lease away first (only one contender
  can) and counts one more generation.
- Heartbeat: the holder rewrites its lease (temp file + rename) every cycle, after checking it still holds it.
- Fencing: before it submits or cancels anything, the holder checks the lease still carries its token. A
  monitor paused past the TTL (SIGSTOP, a hung file system) that was taken over finds another token, does
  nothing more and stops.
- `orch unlock` breaks a lease at once and says whose it was.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator.errors import UserError
from orchestrator.files import write_atomically
from orchestrator.process import pid_alive

LEASE_NAME = "monitor.lease"
DEFAULT_TTL_SECS = 600.0
# The store's guard re-reads the lease when its last confirmation is older than this (monotonic time,
# which runs on while a process is stopped): a monitor resumed after a pause past the TTL finds out at
# its first write, and a busy cycle costs one small read every few seconds, not one per write.
CONFIRM_SECS = 5.0


class LeaseLost(Exception):
    """The campaign's lease is no longer this monitor's: it must write, submit and cancel nothing more."""


def boot_id() -> str:
    """This host's boot (Linux's random boot id): a pid from before a reboot means nothing."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    boot_id: str
    token: str
    generation: int
    heartbeat: float
    """The holder's wall clock at its last renewal."""
    slurm_job: str = ""
    """The Slurm job the holder runs in (SLURM_JOB_ID; `orch run --as-slurm-job`), "" outside one."""

    def describe(self, now: float) -> str:
        where = f"Slurm job {self.slurm_job} on {self.host}" if self.slurm_job else self.host
        return f"{where} pid {self.pid} (heartbeat {max(0.0, now - self.heartbeat):.0f}s ago, generation {self.generation})"


@dataclass(frozen=True)
class Identity:
    """Who is asking (a test gives another host's)."""

    host: str
    pid: int
    boot_id: str
    slurm_job: str = ""

    @classmethod
    def here(cls) -> Identity:
        return cls(socket.gethostname(), os.getpid(), boot_id(), os.environ.get("SLURM_JOB_ID", ""))


def read_holder(path: Path) -> Holder | None:
    try:
        data = json.loads(path.read_text())
        return Holder(str(data["host"]), int(data["pid"]), str(data["boot_id"]), str(data["token"]),
                      int(data["generation"]), float(data["heartbeat"]), str(data.get("slurm_job", "")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        # Written only by link() of a whole file: unreadable means damaged by hand or by the file system.
        return Holder("unknown", 0, "", "", 0, 0.0)


def stale_reason(holder: Holder, me: Identity, now: float, ttl: float,
                 job_ended: Callable[[str], bool] | None = None) -> str:
    """Why this lease may be taken over ("" while its holder may still be alive). `job_ended(id)` says whether a
    Slurm job has left the queue: a holder that ran in one is gone with it (Slurm kills a job's processes
    before the job leaves the queue), so the next generation of a monitor job need not wait for the TTL."""
    if holder.host == me.host and holder.boot_id == me.boot_id and not pid_alive(holder.pid):
        return f"its holder {holder.host} pid {holder.pid} is gone"
    if holder.host == me.host and holder.boot_id and me.boot_id and holder.boot_id != me.boot_id:
        return f"{holder.host} rebooted since"
    if now - holder.heartbeat > ttl:
        return f"its last heartbeat is {now - holder.heartbeat:.0f}s old (TTL {ttl:g}s)"
    if holder.slurm_job and holder.slurm_job != me.slurm_job and job_ended is not None and job_ended(holder.slurm_job):
        return f"its Slurm job {holder.slurm_job} has ended"
    return ""


def held_by(directory: Path, holder: Holder, now: float) -> UserError:
    """The refusal when a live monitor holds the campaign: one line naming its host, pid and heartbeat age."""
    return UserError(f"{directory.name}: another monitor holds this campaign: {holder.describe(now)}; "
                     "stop it, or run `orch unlock CONFIG` if it is gone")


def refuse_if_held(directory: Path, job_ended: Callable[[str], bool] | None = None,
                   ttl: float = DEFAULT_TTL_SECS) -> None:
    """Raise `held_by` when a live monitor holds the lease (for a command that must not start beside one)."""
    holder, now = read_holder(Path(directory) / LEASE_NAME), time.time()
    if holder is not None and not stale_reason(holder, Identity.here(), now, ttl, job_ended):
        raise held_by(Path(directory), holder, now)


class MonitorLease:
    def __init__(self, directory: Path, holder: Holder, ttl: float, clock: Callable[[], float]) -> None:
        self.directory = directory
        self.holder = holder
        self.ttl = ttl
        self._clock = clock
        self._confirmed_at = time.monotonic()
        self.took_over = ""
        """Whose stale lease this one replaced, if any (for the log)."""

    @property
    def path(self) -> Path:
        return self.directory / LEASE_NAME

    @classmethod
    def acquire(cls, directory: str | Path, ttl: float = DEFAULT_TTL_SECS, me: Identity | None = None,
                clock: Callable[[], float] = time.time,
                job_ended: Callable[[str], bool] | None = None) -> MonitorLease:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        me = me or Identity.here()
        path = directory / LEASE_NAME
        for _ in range(3):  # a contender may take over or release between our read and our link
            current = read_holder(path)
            took_over = ""
            generation = 1
            if current is not None:
                now = clock()
                reason = stale_reason(current, me, now, ttl, job_ended)
                if not reason:
                    raise held_by(directory, current, now)
                if not _move_away(path, f"stale.{secrets.token_hex(4)}"):
                    continue  # someone else moved or renewed it: look again
                took_over = f"{current.describe(now)}: {reason}"
                generation = current.generation + 1
            holder = Holder(me.host, me.pid, me.boot_id, secrets.token_hex(16), generation, clock(), me.slurm_job)
            if _link_new(path, holder):
                lease = cls(directory, holder, ttl, clock)
                lease.took_over = took_over
                return lease
        raise UserError(f"{directory.name}: the monitor lease changed hands while orch tried to take it; try again")

    def still_held(self) -> bool:
        """Does the lease still carry our token? (Checked before every submit and cancel.)"""
        current = read_holder(self.path)
        held = current is not None and current.token == self.holder.token
        if held:
            self._confirmed_at = time.monotonic()
        return held

    def confirm(self) -> None:
        """The store's write guard: raise LeaseLost unless the lease is still ours (re-read every CONFIRM_SECS)."""
        if time.monotonic() - self._confirmed_at > CONFIRM_SECS and not self.still_held():
            raise LeaseLost(f"the lease in {self.directory} is no longer this monitor's")

    def heartbeat(self) -> bool:
        """Renew the lease; False when it was lost (taken over or broken): do nothing more."""
        if not self.still_held():
            return False
        renewed = Holder(**{**asdict(self.holder), "heartbeat": self._clock()})
        write_atomically(self.path, json.dumps(asdict(renewed)))
        self.holder = renewed
        return True

    def release(self) -> None:
        if self.still_held():
            _move_away(self.path, f"released.{self.holder.token[:8]}")


def _link_new(path: Path, holder: Holder) -> bool:
    """Put a fully written lease in place atomically; False when a lease is already there."""
    temporary = path.with_name(f".{LEASE_NAME}.{holder.token[:8]}.new")
    with open(temporary, "w") as handle:
        handle.write(json.dumps(asdict(holder)))
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(temporary, path)
        return True
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)


def _move_away(path: Path, suffix: str) -> bool:
    """Rename the lease aside (only one of several contenders can) and drop it; False when it was gone.

    If its holder renewed it between our read and the rename, that holder finds its lease gone at its next
    check and stops: two monitors never both go on."""
    aside = path.with_name(f"{LEASE_NAME}.{suffix}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    aside.unlink(missing_ok=True)
    return True


def break_lease(directory: str | Path, clock: Callable[[], float] = time.time) -> str:
    """`orch unlock`: remove the lease whoever holds it; says whose it was ("" when there was none)."""
    path = Path(directory) / LEASE_NAME
    current = read_holder(path)
    if current is None:
        return ""
    path.unlink(missing_ok=True)
    return current.describe(clock())
