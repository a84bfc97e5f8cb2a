"""What `job_array` saves when a campaign submits many jobs at once, on the real Slurm test cluster.

JOBS jobs that share one template (a learning-rate sweep) are submitted by one monitor cycle (`orch run --once`),
first one `sbatch` each (`job_array: off`), then as arrays (`job_array: always`, at most the test cluster's
MaxArraySize of 5 tasks each). The jobs are held (`#SBATCH --hold`) so that only the submission is measured, then
cancelled. Printed: the cycle's wall time, the sbatch calls it made, and the lines plain `squeue` shows for them.

Needs the test cluster: `bash scripts/slurm-test-cluster.sh start`. Run: .venv/bin/python benchmarks/bench_array_submit.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
JOBS = 40


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 600) -> str:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=True).stdout


def submit_once(work: Path, job_array: str) -> tuple[float, int, int]:
    """One monitor cycle over JOBS held jobs: (seconds, sbatch calls, squeue lines for them)."""
    prefix = f"arr-bench-{uuid.uuid4().hex[:6]}"
    (work / "job.sbatch").write_text(textwrap.dedent("""\
        #!/bin/bash
        #SBATCH --job-name={name}
        #SBATCH --output={output_file}
        #SBATCH --hold
        #SBATCH --time=00:05:00
        echo "lr {lr}"; echo "TRAINING DONE"
        """))
    rates = ", ".join(f"{1e-4 * (i + 1):.4g}" for i in range(JOBS))
    (work / "campaign.yaml").write_text(textwrap.dedent(f"""\
        template: job.sbatch
        name: "{prefix}-{{lr}}"
        sbatch_script: "{{name}}.sbatch"
        output_file: "{{name}}.out"
        cmd: "echo submit >> submissions.log && sbatch {{sbatch_script}}"
        termination_str: "TRAINING DONE"
        job_array: {job_array}
        lr: [{rates}]
        """))
    orch = [sys.executable, "-m", "orchestrator"]
    _run([*orch, "build", "campaign.yaml"], cwd=work)
    started = time.perf_counter()
    _run([*orch, "run", "campaign.yaml", "--scheduler", "slurm", "--once"], cwd=work)
    seconds = time.perf_counter() - started
    calls = (work / "submissions.log").read_text().split().count("submit")
    lines = [line for line in _run(["squeue", "--me", "-h", "-o", "%j"]).splitlines() if prefix in line]
    _run([*orch, "cancel", "campaign.yaml", "--scheduler", "slurm"], cwd=work)
    return seconds, calls, len(lines)


def main() -> int:
    cluster = ["bash", str(REPO / "scripts" / "slurm-test-cluster.sh")]
    os.environ["SLURM_CONF"] = _run([*cluster, "conf"]).strip()
    if subprocess.run([*cluster, "status"], capture_output=True, timeout=60).returncode != 0:
        print("bench_array_submit: the Slurm test cluster is not up (bash scripts/slurm-test-cluster.sh start): "
              "not measured")
        return 0
    print(f"{JOBS} ready jobs of one template, submitted by one `orch run --once` cycle (MaxArraySize 5)")
    for job_array, how in (("off", "one sbatch per job"), ("always", "job arrays")):
        with tempfile.TemporaryDirectory() as work:
            seconds, calls, lines = submit_once(Path(work), job_array)
        print(f"  {how:>18}: {seconds:5.1f} s for the cycle, {calls:3d} sbatch calls, {lines:3d} lines in squeue")
    return 0


if __name__ == "__main__":
    sys.exit(main())
