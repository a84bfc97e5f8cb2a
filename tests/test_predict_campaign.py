"""`orch predict CONFIG`: each cooldown branch's final loss from its pretrain run's log and its finished siblings.

The campaign's training logs are written in Megatron's format (`training_log`'s ` iteration N/ M | ... | lm loss:
X |` lines) with losses made by a known law on the schedules the jobs' Megatron-named keys describe; predicting each
finished branch from the others must give back that law's value.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from orchestrator.analysis.loss_laws import Curve, tissue
from test_docs import documented_keys
from orchestrator.campaign.training_log import read_training_losses
from orchestrator.planning.lr_schedules import megatron_lm

TRUTH = np.array([2.5, 0.8, 0.5, 0.9])  # L0, A, alpha, C of Tissue et al.'s law
CONFIG = """\
template: job.sbatch
name: "{EXP}_{PHASE_TAG}"
sbatch_script: "scripts/{name}.sbatch"
output_file: "{RUN_DIR}/train.out"
cmd: "sbatch {sbatch_script}"
EXP: "m{HIDDEN}"
HIDDEN: [64]
LR: 0.01
MIN_LR: 0
LR_WARMUP_ITERS: 100
LR_DECAY_STYLE: WSD
LR_WSD_DECAY_STYLE: linear
GLOBAL_BATCH_SIZE: 16
PHASE:
  - pretrain:
      PHASE_TAG: pretrain
      RUN_DIR: "runs/{EXP}"
      TRAIN_ITERS: 4000
      LR_WSD_DECAY_ITERS: 0
  - cooldown:
      CD: [1000, 2000, 3000, 3500]
      PHASE_TAG: "cd{CD}"
      RUN_DIR: "runs/{EXP}/cd{CD}"
      RESUME_STEP: "{CD}"
      LR_WSD_DECAY_ITERS: "expr({CD} // 2)"
      TRAIN_ITERS: "expr({CD} + {CD} // 2)"
"""


def _lrs(train_iters: int, wsd_iters: int) -> np.ndarray:
    """The LR of optimizer steps 1..T: what Megatron sets after s - 1 iterations (orch lr schedule)."""
    params = dict(lr=0.01, min_lr=0.0, lr_warmup_iters=100, lr_decay_style="WSD", lr_wsd_decay_style="linear",
                  lr_wsd_decay_iters=wsd_iters, train_iters=train_iters, global_batch_size=16)
    return np.array([lr for _step, lr in megatron_lm.curve(range(train_iters), **params)])


def _write_log(path: Path, steps: range, losses: np.ndarray, train_iters: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as log:
        for step, loss in zip(steps, losses):
            log.write(f" [2026-12-07 03:00:00] iteration {step:8d}/{train_iters:8d} | consumed samples: {16 * step:12d} |"
                      f" learning rate: 1.000000E-02 | global batch size:    16 | lm loss: {loss:.6E} | loss scale: 1.0 |\n")


def _campaign_with_logs(tmp_path: Path) -> None:
    """The campaign, its pretrain run logged to step 4000 and three of its four branches finished."""
    (tmp_path / "job.sbatch").write_text("#!/bin/bash\necho {name}\n")
    (tmp_path / "campaign.yaml").write_text(CONFIG)
    pretrain = range(50, 4001, 50)
    _write_log(tmp_path / "runs/m64/train.out", pretrain,
               tissue(TRUTH, Curve("p", 1, _lrs(4000, 0), np.array(pretrain))), 4000)
    for cd in (1000, 2000, 3000):  # finished; cd3500 has not run yet
        final = cd + cd // 2
        steps = range(cd + 50, final + 1, 50)
        _write_log(tmp_path / f"runs/m64/cd{cd}/train.out", steps,
                   tissue(TRUTH, Curve("c", 1, _lrs(final, cd // 2), np.array(steps))), final)


def test_each_finished_branch_is_predicted_from_the_others(tmp_path):
    _campaign_with_logs(tmp_path)
    assert read_training_losses(tmp_path / "runs/m64/cd1000/train.out")[1500] == pytest.approx(
        float(tissue(TRUTH, Curve("c", 1, _lrs(1500, 500), np.array([1500])))[0]), rel=1e-6)

    result = subprocess.run([sys.executable, "-m", "orchestrator", "predict", "campaign.yaml", "--law", "tissue", "--json"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == documented_keys("orch predict CONFIG")[0] and document["version"] == 1
    assert set(document["branches"][0]) == documented_keys("orch predict CONFIG")[1]
    branches = {branch["run"]: branch for branch in document["branches"]}
    assert set(branches) == {f"runs/m64/cd{cd}" for cd in (1000, 2000, 3000, 3500)}
    for cd in (1000, 2000, 3000):
        branch = branches[f"runs/m64/cd{cd}"]
        assert branch["parent"] == "runs/m64" and branch["final_step"] == cd + cd // 2
        assert f"runs/m64/cd{cd}" not in branch["fitted_on"] and len(branch["fitted_on"]) == 3  # left out of its fit
        assert branch["loss"] == pytest.approx(branch["observed"], rel=1e-3)
    planned = branches["runs/m64/cd3500"]
    assert planned["observed"] is None and planned["final_step"] == 5250
    truth = float(tissue(TRUTH, Curve("c", 1, _lrs(5250, 1750), np.array([5250])))[0])
    assert planned["loss"] == pytest.approx(truth, rel=1e-3)


def test_without_a_finished_branch_it_says_why_instead_of_guessing(tmp_path):
    (tmp_path / "job.sbatch").write_text("#!/bin/bash\necho {name}\n")
    (tmp_path / "campaign.yaml").write_text(CONFIG)
    pretrain = range(50, 2001, 50)
    _write_log(tmp_path / "runs/m64/train.out", pretrain,
               tissue(TRUTH, Curve("p", 1, _lrs(4000, 0), np.array(pretrain))), 4000)
    result = subprocess.run([sys.executable, "-m", "orchestrator", "predict", "campaign.yaml", "--law", "tissue"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("not predicted: no finished branch of its pretrain run to learn the drop from") == 4


def test_the_report_shows_each_branch_predicted_beside_what_it_reached(tmp_path):
    _campaign_with_logs(tmp_path)
    result = subprocess.run([sys.executable, "-m", "orchestrator", "report", "campaign.yaml", "-o", "r.html",
                             "--predict", "tissue", "--bootstrap", "0"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "r.html").read_text()
    section = page.split("Cooldown branches predicted (tissue)")[1]
    rows = re.findall(r"<tr><td>(runs/m64/cd\d+)</td><td>(\d+) -&gt; (\d+)</td><td>([\d.]*)</td><td>([\d.]*)</td>", section)
    assert [row[0] for row in rows] == [f"runs/m64/cd{cd}" for cd in (1000, 2000, 3000, 3500)]
    for run, _start, _end, predicted, observed in rows[:3]:
        assert float(predicted) == pytest.approx(float(observed), abs=2e-4), run
    assert rows[3][4] == "" and rows[3][3]  # planned: predicted, nothing observed yet
    assert 'id="predictions"' in section and "cd3500 predicted" in section


GPU_TEMPLATE = "#!/bin/bash\n#SBATCH --nodes=1\n#SBATCH --gres=gpu:4\n#SBATCH --time=02:00:00\necho {name}\n"


def _orch(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)


def test_a_tight_prediction_replaces_the_unstarted_branch_and_plan_counts_the_gpu_hours_saved(tmp_path):
    _campaign_with_logs(tmp_path)
    (tmp_path / "job.sbatch").write_text(GPU_TEMPLATE)  # 4 GPUs x 2 h: 8 GPU-hours a job
    before = _orch(tmp_path, "plan", "campaign.yaml")
    assert before.returncode == 0, before.stderr
    assert "GPU-hours (each job's time limit x GPUs, one attempt each): 40.0" in before.stdout

    # The rule's boundary: the unstarted branch's own 95% interval width (relative), from the same seeded bootstrap.
    seen = _orch(tmp_path, "predict", "campaign.yaml", "--law", "tissue", "--bootstrap", "20", "--json")
    branch = {b["run"]: b for b in json.loads(seen.stdout)["branches"]}["runs/m64/cd3500"]
    width = (branch["high"] - branch["low"]) / branch["loss"]
    too_tight = _orch(tmp_path, "predict", "campaign.yaml", "--law", "tissue", "--bootstrap", "20",
                      "--skip-within", f"{width * 0.99:.12g}", "--scheduler", "local")
    assert too_tight.returncode == 0, too_tight.stderr
    assert "nothing marked" in too_tight.stdout and not (tmp_path / ".orch").exists()

    marked = _orch(tmp_path, "predict", "campaign.yaml", "--law", "tissue", "--bootstrap", "20", "--skip-within",
                   f"{width * 1.01:.12g}", "--scheduler", "local")
    assert marked.returncode == 0, marked.stderr
    # Only the branch that has not started: the finished ones are observed, not predicted.
    assert "1 branch(es) predicted instead of run" in marked.stdout
    assert "runs/m64/cd3500: predicted instead of run: final loss" in marked.stdout

    status = _orch(tmp_path, "status", "campaign.yaml", "--json")
    assert status.returncode == 0, status.stderr
    states = {job["name"]: job for job in json.loads(status.stdout)["jobs"]}
    assert states["m64_cd3500"]["state"] == "cancelled" and "predicted instead of run" in states["m64_cd3500"]["reason"]
    assert all(states[name]["state"] != "cancelled" for name in states if name != "m64_cd3500")

    after = _orch(tmp_path, "plan", "campaign.yaml")
    assert after.returncode == 0, after.stderr
    row = next(line for line in after.stdout.splitlines() if line.startswith("m64_cd3500"))
    assert "predicted" in row.split()
    assert "GPU-hours (each job's time limit x GPUs, one attempt each): 32.0" in after.stdout
    assert "predicted instead of run: 1 job(s) of 1 branch(es)" in after.stdout and "8.0 GPU-hours saved" in after.stdout
    document = json.loads(_orch(tmp_path, "plan", "campaign.yaml", "--json").stdout)
    predicted = {job["name"]: job["orch_predicted"] for job in document["jobs"]}
    assert predicted["m64_cd1000"] is None and set(predicted["m64_cd3500"]) == documented_keys("orch plan")[2]
    truth = float(tissue(TRUTH, Curve("c", 1, _lrs(5250, 1750), np.array([5250])))[0])
    assert predicted["m64_cd3500"]["loss"] == pytest.approx(truth, rel=1e-3)
    assert predicted["m64_cd3500"]["low"] <= predicted["m64_cd3500"]["loss"] <= predicted["m64_cd3500"]["high"]

    # Run after all (its output appears): no longer shown as predicted, its GPU-hours count again.
    (tmp_path / "runs/m64/cd3500").mkdir(parents=True, exist_ok=True)
    (tmp_path / "runs/m64/cd3500/train.out").write_text("started\n")
    rerun = _orch(tmp_path, "plan", "campaign.yaml")
    assert "predicted instead of run" not in rerun.stdout and "one attempt each): 40.0" in rerun.stdout


def test_the_rule_needs_intervals_and_refuses_without_them(tmp_path):
    _campaign_with_logs(tmp_path)
    refused = _orch(tmp_path, "predict", "campaign.yaml", "--law", "tissue", "--skip-within", "0.5%")
    assert refused.returncode == 2 and "--bootstrap 20" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    bad = _orch(tmp_path, "predict", "campaign.yaml", "--skip-within", "150%")
    assert bad.returncode == 2 and "--skip-within" in bad.stderr
    assert not (tmp_path / ".orch").exists()  # nothing written
