"""The one way orch runs an outside command: bounded in time, and killed whole when it overruns.

A command is started in a session of its own, so a timeout kills its whole process group (a `sh -c`
and the sbatch or probe script under it), not just the shell while its children run on.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return f"{self.stdout}\n{self.stderr}".strip()


class CommandTimeout(Exception):
    """The command ran past its time limit and was killed with its process group."""


def run_command(
    command: Sequence[str] | str,
    timeout: float | None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> CommandResult:
    """Run argv (or a shell command line, given as one string); raise CommandTimeout or OSError.

    `timeout=None` waits as long as the command runs (a user's own command run by hand).
    """
    shell = isinstance(command, str)
    process = subprocess.Popen(
        command if shell else list(command),
        shell=shell,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.communicate()
        raise CommandTimeout(f"{command if shell else ' '.join(command)} timed out after {timeout:g}s") from None
    return CommandResult(process.returncode, stdout, stderr)


def pid_alive(pid: int) -> bool:
    """Is there a process with this id on this host (owned by anyone)?"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True
