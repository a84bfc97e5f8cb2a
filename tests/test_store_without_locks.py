"""A campaign folder on a file system whose lock calls fail with ENOSYS (Lustre `noflock`), emulated with seccomp.

Under the filter SQLite's default VFS fails with "disk I/O error" (checked first, so the emulation is real);
orch's monitor runs the campaign to its end anyway (unix-dotfile VFS, lease by link()), and status reads it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor_campaign import orch_command, write_campaign

NOFLOCK = Path(__file__).parent / "tools" / "noflock.py"
SYSTEM_PYTHON = "/usr/bin/python3"
STEPS = """
for step in 1 2 3; do echo "iteration $step"; sleep 0.2; done
echo "TRAINING DONE"
"""


def _seccomp_available() -> bool:
    return os.path.exists(SYSTEM_PYTHON) and subprocess.run(
        [SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True).returncode == 0


if not _seccomp_available():
    if os.environ.get("CI"):
        raise RuntimeError("python3-seccomp is missing: `make test` installs it (scripts/install-test-tools.sh)")
    pytest.skip("python3-seccomp not installed (make test installs it)", allow_module_level=True)


def without_locks(root: Path, *command: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SYSTEM_PYTHON, str(NOFLOCK), *command], cwd=root, capture_output=True, text=True,
                          timeout=timeout)


def test_the_emulated_mount_refuses_lock_calls(tmp_path):
    probe = without_locks(tmp_path, sys.executable, "-c", "import sqlite3; sqlite3.connect('x.db').execute('create table t(x)')")
    assert probe.returncode != 0 and "disk I/O error" in probe.stderr


def test_a_campaign_runs_to_its_end_where_lock_calls_fail(tmp_path):
    prefix = write_campaign(tmp_path, STEPS, grid="idx: [0, 1]")
    assert without_locks(tmp_path, *orch_command("build", "campaign.yaml")).returncode == 0
    run = without_locks(tmp_path, *orch_command("run", "campaign.yaml", "--scheduler", "local", "--poll-secs", "0.3"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Traceback" not in run.stderr and "2 jobs: 2 done" in run.stdout
    status = without_locks(tmp_path, *orch_command("status", "campaign.yaml"))
    assert status.returncode == 0 and status.stdout.count("done") >= 2 and f"{prefix}_1" in status.stdout
    # A second run (the monitor is gone, its dot-file lock with it) finds everything done, submits nothing.
    again = without_locks(tmp_path, *orch_command("run", "campaign.yaml", "--scheduler", "local", "--poll-secs", "0.3"))
    assert again.returncode == 0 and "submitted" not in again.stdout, again.stdout + again.stderr
