"""A node that fails a job is excluded, on the real Slurm test cluster's two nodes (partition `pair`: the machine's
own node and a second slurmd, `<host>-b`; scripts/slurm-test-cluster.sh).

The first attempt prints NCCL's "unhandled system error" (the text torch's c10d raises for a NIC or peer gone) and
exits 1. The monitor marks the node it ran on (sacct's NodeList), resubmits with `sbatch --exclude`, and the
campaign's next job is submitted with the same exclusion; both run on the other node.
"""

from __future__ import annotations

import re
import subprocess
import textwrap

import pytest

from monitor_campaign import run_orch, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

FAULT = ("torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/NCCLUtils.hpp:275, "
         "unhandled system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.21.5")


def _nodes(job_id: str) -> str:
    """The node sacct says the job ran on; accounting records a job shortly after it ends (slurmdbd is asynchronous),
    so it is waited for."""
    def listed() -> str:
        return subprocess.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State,NodeList"], capture_output=True,
                              text=True, timeout=60).stdout.strip()

    def ended_on() -> str:
        state, _, nodes = listed().partition("|")
        return nodes if state in ("COMPLETED", "FAILED") else ""

    return wait_for(ended_on, 60, interval=1, what=f"job {job_id}'s end in accounting (at first: {listed()!r})")


def test_a_node_fault_keeps_the_resubmission_and_later_jobs_off_that_node(slurm_cluster, slurm_job_prefix, tmp_path):
    (tmp_path / "job.sbatch").write_text(textwrap.dedent(f"""\
        #!/bin/bash
        #SBATCH --job-name={{name}}
        #SBATCH --output={{output_file}}
        #SBATCH --open-mode=append
        #SBATCH --partition=pair
        #SBATCH --time=00:02:00
        #SBATCH --ntasks=1
        n=$(cat logs/{{name}}.count 2>/dev/null || echo 0); n=$((n + 1)); echo $n > logs/{{name}}.count
        echo "attempt $n on $SLURMD_NODENAME"
        if [ "{{kind}}" = flaky ] && [ $n -eq 1 ]; then echo "{FAULT}"; exit 1; fi
        echo "TRAINING DONE"
        """))
    (tmp_path / "campaign.yaml").write_text(textwrap.dedent(f"""\
        template: job.sbatch
        name: "{slurm_job_prefix}{{kind}}"
        sbatch_script: "scripts/{{name}}.sbatch"
        output_file: "logs/{{name}}.out"
        cmd: "sbatch {{sbatch_script}}"
        termination_str: "TRAINING DONE"
        check_interval_secs: 1
        kind:
          - flaky:
              start_condition_cmd: ""
          - later:
              start_condition_cmd: "grep -q 'TRAINING DONE' logs/{slurm_job_prefix}flaky.out && echo 1 || echo 0"
        """))
    (tmp_path / "logs").mkdir()
    result = run_orch(tmp_path, "build-and-run", "campaign.yaml", "--scheduler", "slurm", "--poll-secs", "1",
                      timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    flaky = (tmp_path / "logs" / f"{slurm_job_prefix}flaky.out").read_text()
    first, second = re.findall(r"attempt \d on (\S+)", flaky)
    assert first != second  # resubmitted elsewhere
    marked = re.search(rf"{slurm_job_prefix}flaky: (\d+) node fault in its output: .*unhandled system error.*: excluding "
                       rf"(\S+) from later submissions", result.stdout)
    assert marked and marked.group(2) == first, result.stdout
    assert _nodes(marked.group(1)) == first  # the node sacct says the failed attempt ran on
    resubmitted = re.search(rf"{slurm_job_prefix}flaky: resubmitted (\d+) .*, excluding {first}\n", result.stdout)
    assert resubmitted and _nodes(resubmitted.group(1)) == second, result.stdout
    later = re.search(rf"{slurm_job_prefix}later: submitted (\d+) .*, excluding {first}\n", result.stdout)
    assert later and _nodes(later.group(1)) == second, result.stdout
    assert f"attempt 1 on {second}" in (tmp_path / "logs" / f"{slurm_job_prefix}later.out").read_text()

    listed = run_orch(tmp_path, "nodes", "campaign.yaml", timeout=60)
    assert f"{first}: excluded for" in listed.stdout and f"{slurm_job_prefix}flaky ({marked.group(1)})" in listed.stdout
    cleared = run_orch(tmp_path, "nodes", "campaign.yaml", "--clear", first, timeout=60)
    assert cleared.stdout.strip() == f"cleared 1 node(s): {first}"
