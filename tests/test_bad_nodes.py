"""Nodes that failed a campaign's jobs: marked from the attempt's ending, excluded from later submissions within
bounds, listed and cleared by `orch nodes`."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from orchestrator.job_state import JobState
from orchestrator.jobs import DEFAULT_NODE_FAULT_REGEX, Job
from orchestrator.monitor.lifecycle import Facts, JobView, MarkBadNodes, decide
from orchestrator.monitor.probes import OutputWatcher
from orchestrator.scheduler.base import Observation, SchedulerState
from orchestrator.scheduler.slurm import with_excluded_nodes
from orchestrator.state.bad_nodes import clear_bad, excluded, mark_bad, read_bad_nodes
from orchestrator.state.campaign import campaign_dir

HOUR = 3600.0
# Lines as the libraries print them: NCCL's exception text (torch/csrc/distributed/c10d/NCCLUtils.hpp), the
# interconnect failure oellm-autoexp's Leonardo config matches, and CUDA's ECC error string (cudaErrorECCUncorrectable).
NCCL_FAULT = ("torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/NCCLUtils.hpp:275, "
              "unhandled system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.21.5\n")
LINK_FAULT = "srun: error: lrdn0417: task 3: failed on node lrdn0417: Communication connection failure\n"
ECC_FAULT = "RuntimeError: CUDA error: uncorrectable ECC error encountered\n"
NOT_A_FAULT = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"


@pytest.mark.parametrize("line, fault", [(NCCL_FAULT, True), (LINK_FAULT, True), (ECC_FAULT, True),
                                         (NOT_A_FAULT, False), (" iteration 10/ 100 | lm loss: 3.2 |\n", False)])
def test_the_default_patterns_blame_the_node_for_node_faults_only(tmp_path, line, fault):
    log = tmp_path / "out"
    log.write_text("started\n" + line)
    facts = OutputWatcher().facts(str(log), node_fault_regex=DEFAULT_NODE_FAULT_REGEX)
    assert (facts.fault_at == len("started\n")) is fault


def _decide(tmp_path, state: SchedulerState, text: str, run_offset: int = 0):
    log = tmp_path / "out"
    log.write_text(text)
    job = Job(name="j", template="t", sbatch_script="j.sbatch", output_file=str(log), cmd="sbatch j.sbatch")
    facts = OutputWatcher().facts(str(log), node_fault_regex=job.node_fault_regex)
    view = JobView("j", JobState.RUNNING, scheduler_id="7", run_start="T0", run_output_offset=run_offset)
    return decide(job, view, Facts(now=1.0, scheduler_known=True, output=facts,
                                   observation=Observation("7", "j", state, 1)))


def test_an_attempt_ended_by_its_node_marks_the_node(tmp_path):
    marks = [a for a in _decide(tmp_path, SchedulerState.FAILED, NCCL_FAULT) if isinstance(a, MarkBadNodes)]
    assert marks == [MarkBadNodes("7", f"node fault in its output: {NCCL_FAULT.strip()!r}")]
    assert [a for a in _decide(tmp_path, SchedulerState.NODE_FAIL, "") if isinstance(a, MarkBadNodes)] == [
        MarkBadNodes("7", "ended NODE_FAIL")]
    # A fault printed by an earlier attempt, or a crash of the job's own: no node is blamed.
    assert not [a for a in _decide(tmp_path, SchedulerState.FAILED, NCCL_FAULT, run_offset=len(NCCL_FAULT))
                if isinstance(a, MarkBadNodes)]
    assert not [a for a in _decide(tmp_path, SchedulerState.FAILED, NOT_A_FAULT) if isinstance(a, MarkBadNodes)]


def test_marks_are_bounded_in_time_and_count_newest_first(tmp_path):
    mark_bad(tmp_path, ["n1"], "a", "ended NODE_FAIL", now=0.0)
    mark_bad(tmp_path, ["n2", "n3"], "b", "node fault", now=10 * HOUR)
    mark_bad(tmp_path, ["n4"], "c", "node fault", now=20 * HOUR)
    marks = read_bad_nodes(tmp_path)
    assert set(marks) == {"n1", "n2", "n3", "n4"}
    assert [m.node for m in excluded(marks, now=20 * HOUR, hours=24, limit=8)] == ["n4", "n2", "n3", "n1"]
    assert [m.node for m in excluded(marks, now=25 * HOUR, hours=24, limit=8)] == ["n4", "n2", "n3"]  # n1 expired
    assert [m.node for m in excluded(marks, now=20 * HOUR, hours=24, limit=2)] == ["n4", "n2"]
    assert excluded(marks, now=20 * HOUR, hours=24, limit=0) == []
    # A new mark of a known node renews it.
    mark_bad(tmp_path, ["n1"], "d", "ended NODE_FAIL", now=26 * HOUR)
    assert read_bad_nodes(tmp_path)["n1"].job == "d"
    assert clear_bad(tmp_path, ["n2", "nope"]) == ["n2"]
    assert clear_bad(tmp_path) == ["n1", "n3", "n4"] and read_bad_nodes(tmp_path) == {}


@pytest.mark.parametrize("command, expected", [
    ("sbatch s.sbatch", "sbatch --exclude=n1,n2 s.sbatch"),
    ("echo j >> submissions.log && sbatch s.sbatch", "echo j >> submissions.log && sbatch --exclude=n1,n2 s.sbatch"),
    ("/usr/bin/sbatch --parsable s.sbatch", "/usr/bin/sbatch --exclude=n1,n2 --parsable s.sbatch"),
    ("./submit_with_sbatch.sh s.sbatch", "./submit_with_sbatch.sh s.sbatch"),  # sbatch out of sight: left alone
])
def test_the_exclusion_goes_right_after_the_sbatch_word(command, expected):
    assert with_excluded_nodes(command, ["n1", "n2"]) == expected
    assert with_excluded_nodes(command, []) == command


def test_orch_nodes_lists_and_clears(tmp_path):
    (tmp_path / "t").write_text("#!/bin/bash\necho {name}\n")
    (tmp_path / "c.yaml").write_text('template: t\nname: j\nsbatch_script: s\noutput_file: o\ncmd: "sbatch {sbatch_script}"\n')
    mark_bad(campaign_dir(tmp_path / "c.yaml", tmp_path), ["gpu07"], "j", "ended NODE_FAIL", now=time.time(), scheduler_id="41")

    def orch(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)

    listed = orch("nodes", "c.yaml")
    assert listed.returncode == 0, listed.stderr
    assert "gpu07: excluded for 24.0 h more; j (41) ended NODE_FAIL" in listed.stdout
    assert "gpu07: excluded" in orch("status", "c.yaml").stdout
    assert orch("nodes", "c.yaml", "--clear").stdout.strip() == "cleared 1 node(s): gpu07"
    assert orch("nodes", "c.yaml").stdout.strip() == "no node marked bad"
