"""Shared fixtures: the real one-node Slurm test cluster (scripts/slurm-test-cluster.sh)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CLUSTER_SCRIPT = REPO / "scripts" / "slurm-test-cluster.sh"


def _test_cluster_conf() -> str:
    """The test cluster's own slurm.conf: every Slurm command of the tests (and of the orch processes they
    start) talks to it, never to a machine's own cluster."""
    result = subprocess.run(["bash", str(CLUSTER_SCRIPT), "conf"], capture_output=True, text=True, timeout=30)
    return result.stdout.strip()


os.environ.setdefault("SLURM_CONF", _test_cluster_conf())


@pytest.fixture(autouse=True)
def _no_inherited_terminal_size() -> None:
    """orch fits its tables to COLUMNS (as rich and shutil do). GNU readline, once anything in the test process
    loads it on a terminal, exports COLUMNS and LINES behind os.environ's back (C setenv): a test's orch would
    then draw for that width. Tests that want a width pass COLUMNS themselves."""
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)
        os.unsetenv(name)


@dataclass(frozen=True)
class SlurmTestCluster:
    """The running test cluster; tests share it with each other (and with other test runs)."""

    script: Path = CLUSTER_SCRIPT

    def control(self, action: str, timeout: float = 120) -> None:
        """Run `slurm-test-cluster.sh ACTION` (stop-controller, start-controller, ...)."""
        subprocess.run(["bash", str(self.script), action], check=True, timeout=timeout, capture_output=True)

    def is_up(self) -> bool:
        return _cluster_answers()

    def wait_until_up(self, seconds: float = 90) -> bool:
        return _cluster_answers_within(seconds)

    def sacctmgr(self, *args: str) -> None:
        subprocess.run(["sacctmgr", "-i", *args], check=True, timeout=60, capture_output=True)


def _cluster_answers() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        result = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and any(
        state.strip() in ("idle", "mixed", "allocated", "completing") for state in result.stdout.splitlines()
    )


def _cluster_answers_within(seconds: float) -> bool:
    """Retries for a while: another test may be restarting the controller (takes ~20 s)."""
    if shutil.which("sinfo") is None:
        return False
    deadline = time.monotonic() + seconds
    while not _cluster_answers():
        if time.monotonic() > deadline:
            return False
        time.sleep(2)
    return True


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmTestCluster:
    """The real Slurm cluster. In CI (CI=true) a cluster that does not answer FAILS the test."""
    if not _cluster_answers_within(60):
        message = "the Slurm test cluster does not answer (start it: bash scripts/slurm-test-cluster.sh start)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return SlurmTestCluster()


@pytest.fixture
def slurm_job_prefix(slurm_cluster: SlurmTestCluster) -> Iterator[str]:
    """A unique job-name prefix; every job of this user whose name starts with it (or an orch array's name holding
    it) is cancelled afterwards."""
    prefix = f"orchtest-{uuid.uuid4().hex[:8]}-"
    yield prefix
    # The test may have just restarted the controller: wait until squeue answers, or jobs outlive the run.
    _cluster_answers_within(60)
    listed = subprocess.run(["squeue", "--me", "-h", "-o", "%i|%j"], capture_output=True, text=True, timeout=60)
    ids = [line.split("|", 1)[0] for line in listed.stdout.splitlines()
           if line.partition("|")[2].startswith(prefix) or (line.partition("|")[2].startswith("orch-array-")
                                                             and prefix in line.partition("|")[2])]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def real_stack() -> Path:
    """The real training stack's venv (`make real-stack`: torch CPU, deepspeed, megatron-core, transformers,
    lm_eval), or ORCH_REAL_VENV. In CI (CI=true) a missing one FAILS the test."""
    venv = Path(os.environ.get("ORCH_REAL_VENV", REPO / ".venv-real"))
    if not (venv / "bin" / "torchrun").exists() or not (venv / "bin" / "lm_eval").exists():
        message = f"no real training stack at {venv} (install it: make real-stack)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return venv.resolve()
