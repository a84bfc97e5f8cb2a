"""GPU-hour estimates from rendered scripts: sbatch's own reading of `#SBATCH` lines, every GPU option, time formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.accounting.estimate import estimate_job
from orchestrator.cli import main
from orchestrator.jobs import Job
from orchestrator.scheduler.sbatch_script import parse_time_limit, script_options


def job(cmd: str = "sbatch s.sbatch", **params: object) -> Job:
    return Job("j", "t.sbatch", "s.sbatch", "o.out", cmd, dict(params))


def script(*directives: str, body: str = "python train.py") -> str:
    return "#!/bin/bash\n" + "".join(f"#SBATCH {line}\n" for line in directives) + body + "\n"


@pytest.mark.parametrize(
    ("directives", "nodes", "gpus"),
    [
        (["--nodes=2", "--gpus-per-node=4"], 2, 8),
        (["-N 2", "--gpus-per-node=a100:4"], 2, 8),
        (["-N2", "--gres=gpu:4"], 2, 8),
        (["--nodes=2", "--gres=gpu:a100:4,mps:100"], 2, 8),
        (["--gres=gpu"], 1, 1),
        (["--nodes=4", "--gpus=6"], 4, 6),  # --gpus is the job's total
        (["-N", "1", "-G", "h100:3"], 1, 3),
        (["--nodes=2", "--ntasks-per-node=4", "--gpus-per-task=1"], 2, 8),
        (["--ntasks=3", "--gpus-per-task=2"], 1, 6),
        (["--nodes=2-4", "--gpus-per-node=8"], 4, 32),  # a range may get its maximum
        (["--nodes=2", "--gpus-per-node=4 # a comment --gpus-per-node=8"], 2, 8),
        (["--nodes=2", "--gpus-per-n=2"], 2, 4),  # getopt_long accepts unambiguous prefixes
        (["--nod=2", "--gpus-per-node=2"], 1, 2),  # ... and ignores an ambiguous one (nodes, nodefile, nodelist)
        (["--ntasks=1"], 1, 0),
    ],
)
def test_gpu_options(directives: list[str], nodes: int, gpus: int) -> None:
    estimate = estimate_job(job(), script(*directives, "--time=1:00:00"))
    assert (estimate.nodes, estimate.gpus, estimate.hours) == (nodes, gpus, 1.0)
    assert estimate.gpu_hours == gpus


@pytest.mark.parametrize(
    ("text", "secs"),
    [("5", 300), ("0:02", 2), ("1:30", 90), ("2:00:01", 7201), ("1-0", 86400), ("1-2:03", 93780),
     ("1-2:03:04", 93784), ("UNLIMITED", None), ("infinite", None), ("0", None)],
)
def test_time_formats(text: str, secs: float | None) -> None:
    assert parse_time_limit(text) == secs


def test_directives_end_at_the_first_command_and_must_start_the_line() -> None:
    text = "#!/bin/bash\n#SBATCH --time=2:00:00\n  #SBATCH --time=9:00:00\n# plain\necho hi\n#SBATCH --time=5:00:00\n"
    assert script_options(text)["time"] == "2:00:00"  # indented: a comment; after `echo`: not read


def test_a_later_option_and_the_command_line_win() -> None:
    text = script("--gpus-per-node=2", "--gpus-per-node=4", "--time=1:00:00", "--nodes=1")
    assert estimate_job(job(), text).gpus == 4
    overridden = estimate_job(job(cmd="sbatch -N 3 --time=2:00:00 s.sbatch"), text)
    assert (overridden.nodes, overridden.gpus, overridden.hours) == (3, 12, 2.0)


def test_hetjob_components_after_the_first_are_not_read() -> None:
    text = script("--gpus=2", "--time=1:00:00", "hetjob", "--gpus=64")
    assert estimate_job(job(), text).gpus == 2


def test_no_time_limit_is_unbounded_and_config_keys_override() -> None:
    unbounded = estimate_job(job(), script("--gpus=8"))
    assert unbounded.unbounded and unbounded.gpu_hours == 0
    assert not estimate_job(job(), script("--ntasks=1")).unbounded  # no GPUs: nothing to bound
    fixed = estimate_job(job(estimate_gpus=16, estimate_hours="2.5"), script("--gpus=8"))
    assert (fixed.gpus, fixed.hours, fixed.gpu_hours, fixed.unbounded) == (16, 2.5, 40.0, False)


def test_a_bad_time_limit_is_reported_not_fatal() -> None:
    estimate = estimate_job(job(), script("--gpus=1", "--time=soon"))
    assert estimate.hours is None and "--time" in estimate.problem


CONFIG = """
template: t.sbatch
name: "m{size}_{MODE}_{lr}"
sbatch_script: "s/{name}.sbatch"
output_file: "l/{name}.out"
cmd: "sbatch {sbatch_script}"
size:
  - small: {nodes: 1}
  - large: {nodes: 4}
MODE:
  - train: {hours: 10}
  - eval: {hours: 1}
lr: [1, 2]
"""
TEMPLATE = "#!/bin/bash\n#SBATCH --job-name={name}\n#SBATCH --nodes={nodes}\n#SBATCH --gpus-per-node=4\n#SBATCH --time={hours}:00:00\necho {lr}\n"


@pytest.fixture()
def campaign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "c.yaml").write_text(CONFIG)
    (tmp_path / "t.sbatch").write_text(TEMPLATE)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_plan_prints_per_job_figures_total_and_subtotals(campaign: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "c.yaml"]) == 0
    out = capsys.readouterr().out
    # small: 1 node x 4 GPUs; large: 4 x 4; train 10 h, eval 1 h; two LRs each.
    assert "GPU-hours (each job's time limit x GPUs, one attempt each): 440.0" in out
    assert "by size: small 88.0, large 352.0" in out
    assert "by MODE: train 400.0, eval 40.0" in out
    assert "by lr: 1 220.0, 2 220.0" in out
    row = next(line for line in out.splitlines() if line.startswith("mlarge_train_1 "))
    assert "160.0" in row.split()
    assert main(["plan", "c.yaml", "--by", "size,MODE"]) == 0
    assert "by size × MODE: small × train 80.0, small × eval 8.0, large × train 320.0, large × eval 32.0" in (
        capsys.readouterr().out)


def test_plan_json_carries_the_estimate(campaign: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "c.yaml", "--json", "size=large", "MODE=eval"]) == 0
    jobs = json.loads(capsys.readouterr().out)["jobs"]
    assert [j["orch_estimate"] for j in jobs] == [
        {"nodes": 4, "gpus": 16, "hours": 1.0, "gpu_hours": 16.0, "unbounded": False, "compute_gpu_hours": None}] * 2


def test_plan_flags_unbounded_jobs(campaign: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (campaign / "t.sbatch").write_text(TEMPLATE.replace("#SBATCH --time={hours}:00:00\n", ""))
    assert main(["plan", "c.yaml"]) == 0
    out = capsys.readouterr().out
    assert "8 job(s) with GPUs but no time limit (unbounded, not counted)" in out
    assert out.count("unbounded") >= 8


def test_nodes_without_a_gpu_option_take_the_partitions_gpus_or_are_unknown() -> None:
    from orchestrator.scheduler.base import NodeGpus

    bare = script("--nodes=16", "--time=2:00:00")
    unknown = estimate_job(job(), bare)
    assert unknown.gpus_unknown and unknown.gpus == 0
    cluster = NodeGpus({"booster": 4, "cpu": 0}, default_partition="booster")
    assert estimate_job(job(), bare, cluster).gpus == 64 and estimate_job(job(), bare, cluster).gpu_hours == 128
    on_cpu = estimate_job(job(), script("--nodes=16", "--partition=cpu", "--time=2:00:00"), cluster)
    assert (on_cpu.gpus, on_cpu.gpus_unknown) == (0, False)
    elsewhere = estimate_job(job(), script("--nodes=2", "-p", "other", "--time=2:00:00"), cluster)
    assert elsewhere.gpus_unknown  # a partition the cluster did not list
    assert estimate_job(job(estimate_gpus=8), bare).gpus == 8 and not estimate_job(job(estimate_gpus=8), bare).gpus_unknown
    assert not estimate_job(job(), script("--ntasks=1", "--time=1:00:00")).gpus_unknown  # no nodes asked: a CPU job


def test_plan_reads_gpus_per_node_from_the_test_clusters_node_definition(campaign: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The test cluster's node declares gres gpu:8 (sinfo): 4 nodes x 8 GPUs x 10 h for a large training job."""
    (campaign / "t.sbatch").write_text(TEMPLATE.replace("#SBATCH --gpus-per-node=4\n", ""))
    assert main(["plan", "c.yaml", "size=large", "MODE=train"]) == 0
    out = capsys.readouterr().out
    assert "GPU-hours (each job's time limit x GPUs, one attempt each): 640.0" in out, out


def test_confirmation_asks_for_jobs_of_unknown_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from orchestrator.cli.run import confirm_cost
    from orchestrator.errors import UserError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.sbatch").write_text(script("--nodes=16", "--time=2:00:00"))
    args = argparse.Namespace(yes=False, confirm_above=100.0, config="c.yaml")
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(UserError, match="1 job\\(s\\) of unknown GPU-hours"):
        confirm_cost([job()], args, tmp_path / "state")
    confirm_cost([job()], argparse.Namespace(yes=True, confirm_above=100.0, config="c.yaml"), tmp_path / "state")


def test_compute_based_estimate_counts_the_tokens_a_job_trains(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.accounting.compute import compute_gpu_hours
    from orchestrator.config import load_jobs
    from orchestrator.formulas.flops import training_flops_per_token
    from orchestrator.render import render_job

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)
    jobs = {j.name: j for j in load_jobs("configs/scaling_exps.yaml", filters=["MODE=TRAIN", "MODEL_SIZE=400M",
                                                                                 "LR=0.01", "BIAS=with"])}
    pretrain = jobs["400M_lr0.01_gbs512_biaswith_pretrain_TRAIN"]
    cooldown = jobs["400M_lr0.01_gbs512_biaswith_cd10_TRAIN"]
    p = pretrain.params
    tokens = p["TRAIN_ITERS"] * p["GLOBAL_BATCH_SIZE"] * p["SEQ_LENGTH"]
    per_token = training_flops_per_token(p["NUM_LAYERS"], p["HIDDEN_SIZE"], p["NUM_ATTENTION_HEADS"],
                                         4 * p["HIDDEN_SIZE"], 50304, p["SEQ_LENGTH"], gated_mlp=False)
    expected = tokens * per_token / (p["estimate_tflops"] * 1e12) / 3600
    assert compute_gpu_hours(pretrain, render_job(pretrain)) == pytest.approx(expected)
    # The cooldown trains only from its resume step: its decay tokens, not its whole TRAIN_ITERS.
    c = cooldown.params
    ratio = (c["TRAIN_ITERS"] - c["START_ITER"]) / p["TRAIN_ITERS"]
    assert compute_gpu_hours(cooldown, render_job(cooldown)) == pytest.approx(expected * ratio)
    assert ratio < 0.05
    assert compute_gpu_hours(Job(**{**pretrain.__dict__, "params": {**p, "estimate_tflops": None}}),
                             render_job(pretrain)) is None


def test_plan_without_slurm_here_calls_the_gpus_of_bare_nodes_unknown(campaign: Path) -> None:
    """A planning machine without sbatch knows nothing of the cluster's nodes: not 0 GPUs, unknown."""
    import os
    import subprocess
    import sys

    (campaign / "t.sbatch").write_text(TEMPLATE.replace("#SBATCH --gpus-per-node=4\n", ""))
    env = {**os.environ, "PATH": os.path.dirname(sys.executable)}  # no sbatch on it
    result = subprocess.run([sys.executable, "-m", "orchestrator", "plan", "c.yaml", "size=large", "MODE=train"],
                            cwd=campaign, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "2 job(s) ask for nodes but name no GPUs and the cluster's node definition was not at hand" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("mlarge_train_1 "))
    assert row.split()[2] == "?", row  # NAME, MODE, GPU-H
