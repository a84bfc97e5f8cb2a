"""A time limit met gracefully, on the real Slurm test cluster: Slurm signals before the limit, the trainer saves and
exits, the monitor says so and resubmits, and the next segment resumes from that save.

tinylm (examples/tinylm) handles SIGTERM as Megatron's `--exit-signal-handler` does (save at the end of the iteration,
`[exiting program after receiving SIGTERM.]`). `#SBATCH --signal=B:TERM@100` asks Slurm for SIGTERM 100 s before the
2-minute limit; the trainer is `exec`ed, so it is the batch shell Slurm signals. Slurm may send it up to 60 s early.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from monitor_campaign import run_orch, wait_for, write_tinylm_segments

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

ITERATIONS = 600  # 0.1 s each: 60 s of training, more than one segment holds before its signal (Slurm sent it
# 26-30 s into each 2-minute segment here, 60 s early as its docs allow)


def test_a_segment_that_saves_on_the_signal_is_resumed_not_killed(slurm_cluster, slurm_job_prefix, tmp_path):
    name = f"{slurm_job_prefix}graceful"
    write_tinylm_segments(tmp_path, name, ITERATIONS)
    result = run_orch(tmp_path, "build-and-run", "campaign.yaml", "--scheduler", "slurm", "--poll-secs", "1",
                      timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    segments = (tmp_path / "submissions.log").read_text().split()
    assert len(segments) >= 2, result.stdout  # the signal came before the work was done
    graceful = re.findall(r"running -> waiting: \d+ ended COMPLETED \(saved iteration (\d+), then exiting program after "
                          r"receiving SIGTERM\)", result.stdout)
    assert len(graceful) == len(segments) - 1, result.stdout  # every segment but the last ended on the signal
    assert "killed while saving" not in result.stdout
    output = (tmp_path / "logs" / f"{name}.out").read_text()
    # Each segment resumed where the previous one saved, and the run reached its last iteration.
    resumed = [int(found) for found in re.findall(r"loading checkpoint from ckpt at iteration (\d+)", output)]
    assert resumed == [int(saved) for saved in graceful]
    assert f"iteration {ITERATIONS:8d}/{ITERATIONS:8d}" in output
    # Slurm saw clean endings: no segment was killed by its time limit. Accounting records a job shortly after it
    # ends (slurmdbd is asynchronous): wait for the last one.
    def accounted() -> list[str]:
        return subprocess.run(["sacct", "-n", "-X", "-P", "-o", "State", "--name", name], capture_output=True,
                              text=True, timeout=60).stdout.split()

    states = wait_for(lambda: (found := accounted()) == ["COMPLETED"] * len(segments) and found, 60, interval=1,
                      what=f"{len(segments)} COMPLETED segments in accounting (at first: {accounted()})")
    assert states == ["COMPLETED"] * len(segments)
