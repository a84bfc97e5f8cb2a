"""Small real campaigns for the monitor's end-to-end tests (local backend and real Slurm).

Each campaign lives in its own directory with a config, a str.format template and a unique name
prefix, so tests sharing one Slurm cluster never see each other's jobs. With Slurm the submit
command appends the job name to `submissions.log` before calling sbatch: that file counts real
sbatch calls, the figure "no duplicate submission" is about.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TEMPLATE_HEAD = """#!/bin/bash
#SBATCH --job-name={name}
#SBATCH --output={output_file}
#SBATCH --open-mode=append
#SBATCH --time=00:03:00
#SBATCH --ntasks=1
"""


SUBMIT_CMD = "echo {name} >> submissions.log && sbatch {sbatch_script}"


def write_campaign(root: Path, body: str, grid: str = "idx: [0]", extra: str = "", check_interval: float = 1,
                   name: str = "{prefix}_{idx}", cmd: str = SUBMIT_CMD, prefix: str | None = None) -> str:
    """Write `campaign.yaml` + `job.sbatch` under root; returns the job-name prefix (unique unless given)."""
    prefix = prefix or "m" + uuid.uuid4().hex[:8]
    (root / "job.sbatch").write_text(TEMPLATE_HEAD + textwrap.dedent(body))
    config = textwrap.dedent(f"""\
        template: job.sbatch
        name: "{name}"
        sbatch_script: "scripts/{{name}}.sbatch"
        output_file: "logs/{{name}}.out"
        cmd: "{cmd}"
        termination_str: "TRAINING DONE"
        check_interval_secs: {check_interval}
        prefix: "{prefix}"
        """) + textwrap.dedent(grid) + "\n" + textwrap.dedent(extra)
    (root / "campaign.yaml").write_text(config)
    (root / "logs").mkdir(exist_ok=True)
    return prefix


def campaign_state(root: Path, config: str = "campaign.yaml") -> Path:
    """The campaign's own state folder under root/.orch (one per config)."""
    from orchestrator.state.campaign import campaign_dir

    return campaign_dir(root / config, root)


def orch_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator", *args]


def link_project_files(root: Path, *relative_paths: str) -> None:
    """Symlink the repository's config, templates and example code into a test's working directory, as shipped."""
    for relative in relative_paths:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).symlink_to(REPO / relative)


def run_orch(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(orch_command(*args), cwd=root, capture_output=True, text=True, timeout=timeout)


def start_orch(root: Path, *args: str) -> subprocess.Popen[str]:
    log = open(root / "orch-console.log", "a")
    return subprocess.Popen(orch_command(*args), cwd=root, stdout=log, stderr=subprocess.STDOUT, text=True)


def console(root: Path) -> str:
    path = root / "orch-console.log"
    return path.read_text() if path.exists() else ""


def submissions(root: Path) -> Counter[str]:
    path = root / "submissions.log"
    return Counter(path.read_text().split()) if path.exists() else Counter()


def status(root: Path) -> dict[str, dict]:
    result = run_orch(root, "status", "campaign.yaml", "--json", timeout=60)
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)["jobs"]}


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def write_tinylm_segments(root: Path, name: str, iterations: int, extra: str = "") -> None:
    """A campaign of one tinylm run (examples/tinylm) cut into segments by a graceful time limit: `#SBATCH
    --signal=B:TERM@100` asks Slurm for SIGTERM 100 s before a 2-minute limit, and tinylm saves and exits on it as
    Megatron's `--exit-signal-handler` does (`exec`ed, so it is the batch shell Slurm signals). 0.1 s per iteration."""
    (root / "job.sbatch").write_text(textwrap.dedent(f"""\
        #!/bin/bash
        #SBATCH --job-name={{name}}
        #SBATCH --output={{output_file}}
        #SBATCH --open-mode=append
        #SBATCH --time=00:02:00
        #SBATCH --signal=B:TERM@100
        #SBATCH --ntasks=1
        export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
        exec {sys.executable} {REPO}/examples/tinylm/train.py --hidden-size 16 --lr 1e-2 --train-iters {iterations} \\
            --sleep-per-iter 0.1 --log-interval 20 --eval-interval 0 \\
            --save ckpt --load ckpt --save-interval 100000
        """))
    (root / "campaign.yaml").write_text(textwrap.dedent(f"""\
        template: job.sbatch
        name: "{name}"
        sbatch_script: "scripts/{{name}}.sbatch"
        output_file: "logs/{{name}}.out"
        cmd: "echo {{name}} >> submissions.log && sbatch {{sbatch_script}}"
        termination_str: "after training is done"
        check_interval_secs: 2
        """) + extra)
    (root / "logs").mkdir(exist_ok=True)


def sigkill_when(monitor: subprocess.Popen[str], predicate, timeout: float, what: str) -> None:
    """SIGKILL a running `orch run` once `predicate` holds (as a crash or `kill -9` would end it)."""
    try:
        wait_for(predicate, timeout, what=what)
        monitor.send_signal(signal.SIGKILL)
        monitor.wait(10)
    finally:
        if monitor.poll() is None:
            monitor.kill()
