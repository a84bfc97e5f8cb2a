"""The gap between one training segment's end and the next one's start, on the real Slurm test cluster.

A long pretrain on a cluster with a walltime cap runs as segments. Three ways to queue the next one:
- resubmitted: `orch run` sees the segment leave the queue (one squeue per `--poll-secs`) and submits the next;
- pre-queued: `orch run` with `prequeue: always` queues the next segment while one runs, with
  `--dependency=afterany:<its id>`;
- chained by hand: every segment is in the queue from the start, each behind the one before (plain sbatch).
Each segment sleeps SEGMENT_SECS and exits 0 (a segment that saved and exited); the gaps are sacct's Start of
segment k+1 minus End of segment k, in seconds (Slurm's clock, 1 s resolution).

Needs the test cluster: `bash scripts/slurm-test-cluster.sh start`. Run: .venv/bin/python benchmarks/bench_segment_gap.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEGMENTS = 4
SEGMENT_SECS = 12  # longer than the slowest poll: a pre-queuing monitor sees every segment running
POLL_SECS = (2, 10)


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 600) -> str:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=True).stdout


def _gaps(ids: list[str]) -> list[float]:
    """Start of each segment minus the End of the one before, from accounting (which lags a little)."""
    for _ in range(30):
        rows = _run(["sacct", "-n", "-X", "-P", "-j", ",".join(ids), "-o", "JobIDRaw,State,Start,End"]).splitlines()
        times = {row.split("|")[0]: row.split("|")[2:] for row in rows}
        if all(i in times and "Unknown" not in times[i][1] for i in ids):
            break
        time.sleep(1)
    parsed = [[datetime.fromisoformat(value) for value in times[i]] for i in ids]
    return [(parsed[k + 1][0] - parsed[k][1]).total_seconds() for k in range(len(ids) - 1)]


def chained(work: Path) -> list[float]:
    script = work / "segment.sbatch"
    script.write_text(f"#!/bin/bash\n#SBATCH --job-name=gap-chain-{uuid.uuid4().hex[:6]}\n#SBATCH --output=/dev/null\n"
                      f"sleep {SEGMENT_SECS}\n")
    ids: list[str] = []
    for _ in range(SEGMENTS):
        dependency = [f"--dependency=afterany:{ids[-1]}"] if ids else []
        ids.append(_run(["sbatch", "--parsable", *dependency, str(script)]).strip().split(";")[0])
    while _run(["squeue", "-h", "-j", ",".join(ids), "-o", "%i"]).strip():
        time.sleep(1)
    return _gaps(ids)


def by_orch(work: Path, poll_secs: float, prequeue: str = "off") -> list[float]:
    name = f"gap-orch-{uuid.uuid4().hex[:6]}"
    (work / "job.sbatch").write_text(textwrap.dedent(f"""\
        #!/bin/bash
        #SBATCH --job-name={{name}}
        #SBATCH --output={{output_file}}
        #SBATCH --open-mode=append
        n=$(cat {{name}}.count 2>/dev/null || echo 0)
        if [ $n -ge {SEGMENTS} ]; then echo "TRAINING DONE (nothing left)"; exit 0; fi
        n=$((n + 1)); echo $n > {{name}}.count
        sleep {SEGMENT_SECS}
        echo " iteration $((n * 100))/ {SEGMENTS * 100} |"
        if [ $n -ge {SEGMENTS} ]; then echo "TRAINING DONE"; fi
        """))
    (work / "campaign.yaml").write_text(f'template: job.sbatch\nname: "{name}"\nsbatch_script: "{{name}}.sbatch"\n'
                                        f'output_file: "{{name}}.out"\ncmd: "sbatch {{sbatch_script}}"\n'
                                        f'termination_str: "TRAINING DONE"\ncheck_interval_secs: {poll_secs}\n'
                                        f'prequeue: {prequeue}\n')
    orch = [sys.executable, "-m", "orchestrator"]
    _run([*orch, "build-and-run", "campaign.yaml", "--scheduler", "slurm", "--poll-secs", str(poll_secs)], cwd=work)
    ids = [row.split("|")[0] for row in _run(["sacct", "-n", "-X", "-P", "--name", name, "-o", "JobIDRaw"]).split()]
    return _gaps(sorted(ids, key=int)[:SEGMENTS])  # a last pre-queued one that found nothing left is not a segment


def main() -> int:
    cluster = ["bash", str(REPO / "scripts" / "slurm-test-cluster.sh")]
    os.environ["SLURM_CONF"] = _run([*cluster, "conf"]).strip()
    if subprocess.run([*cluster, "status"], capture_output=True, timeout=60).returncode != 0:
        print("bench_segment_gap: the Slurm test cluster is not up (bash scripts/slurm-test-cluster.sh start): not measured")
        return 0
    print(f"{SEGMENTS} segments of {SEGMENT_SECS} s each; gap = next segment's Start - previous End (sacct, seconds)")
    with tempfile.TemporaryDirectory() as scratch:
        gaps = chained(Path(scratch))
        print(f"  chained (--dependency=afterany), plain sbatch: median {statistics.median(gaps):.0f} s, "
              f"max {max(gaps):.0f} s ({', '.join(f'{g:.0f}' for g in gaps)})")
        for poll in POLL_SECS:
            for prequeue, how in (("off", "resubmitted"), ("always", "pre-queued (prequeue: always)")):
                with tempfile.TemporaryDirectory() as work:
                    gaps = by_orch(Path(work), poll, prequeue)
                print(f"  {how} by orch run --poll-secs {poll}: median {statistics.median(gaps):.0f} s, "
                      f"max {max(gaps):.0f} s ({', '.join(f'{g:.0f}' for g in gaps)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
