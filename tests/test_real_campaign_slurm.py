"""configs/gpt2_deepspeed.yaml (the real training stack) as shipped, on the real Slurm test cluster.

18 jobs: 3 widths x (pretrain + 2 cooldown branches) x (train with DeepSpeed ZeRO-1 on 2 CPU ranks, convert with
DeepSpeed's zero_to_fp32 + save_pretrained and evaluate with lm-eval). The config's fault drill is switched on
for one pretrain job: its first attempt stalls in the middle of rank 1's shard of save 200 and Slurm's time limit
kills it there. The monitor resubmits it; it resumes from save 100 (the last whole one), never from the dead save
DeepSpeed's `latest` names, and no conversion ever starts on the dead save (a conversion of it fails: the
convert job would have failed and been resubmitted).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter

import pytest

from monitor_campaign import link_project_files, run_orch
from orchestrator.campaign.results import collect_results
from orchestrator.campaign.whole_files import file_problem
from orchestrator.config import load_jobs

CONFIG = "configs/gpt2_deepspeed.yaml"
SUBMIT = "echo {name} >> submissions.log && sbatch {sbatch_script}"

pytestmark = [pytest.mark.slurm, pytest.mark.real_stack, pytest.mark.slow]


def test_real_campaign_on_slurm(slurm_cluster, slurm_job_prefix, real_stack, tmp_path, monkeypatch):
    link_project_files(tmp_path, CONFIG, "templates/gpt2_deepspeed", "examples/gpt2_deepspeed", "examples/tinylm")
    drill = f"{slurm_job_prefix}h32_pretrain_train"
    fixes = ["-f", f"EXP={slurm_job_prefix}h{{HIDDEN}}", "-f", f"REAL_VENV={real_stack}", "-f", f"DRILL={drill}",
             "-f", f"cmd={SUBMIT}"]
    result = run_orch(tmp_path, "build-and-run", CONFIG, *fixes, "--scheduler", "slurm", "--max-jobs", "4",
                      "--poll-secs", "2", timeout=2400)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]

    rows = json.loads(run_orch(tmp_path, "status", CONFIG, *fixes, "--json", timeout=60).stdout)["jobs"]
    assert len(rows) == 18 and {row["state"] for row in rows} == {"done"}
    submitted = Counter((tmp_path / "submissions.log").read_text().split())
    assert submitted.pop(drill) == 2  # killed by its time limit mid-save, then resumed
    assert set(submitted.values()) == {1} and len(submitted) == 17  # every other job exactly once

    ended = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "State", "--name", drill], capture_output=True,
                           text=True, timeout=60).stdout.split()
    assert ended == ["TIMEOUT", "COMPLETED"]
    # The monitor told the kill mid-save from a graceful ending, from the trainer's own save lines.
    assert re.search(r"running -> waiting: \d+ ended TIMEOUT \(killed while saving iteration 200: that save is "
                     r"incomplete \(the run's last whole save: iteration 100\)\)", result.stdout), result.stdout[-4000:]

    run_dir = tmp_path / "runs" / "gpt2_deepspeed" / f"{slurm_job_prefix}h32"
    # The dead save was moved aside, whole files and a truncated shard as the real writer left them.
    dead = list((run_dir / "checkpoints" / ".incomplete").iterdir())
    assert [path.name.split(".")[0] for path in dead] == ["global_step200"]
    assert "truncated" in file_problem(dead[0] / "zero_pp_rank_1_mp_rank_00_optim_states.pt")
    train_log = (run_dir / "slurm_train.out").read_text()
    assert "[stall] rank 1 stopped half-way" in train_log and "resuming from: 100" in train_log
    convert_log = (run_dir / "slurm_convert_eval.out").read_text()
    assert convert_log.count("converting and evaluating iteration 200") == 1

    # Every whole save converted and evaluated exactly once, by lm-eval, and `orch results` reads its files.
    monkeypatch.chdir(tmp_path)
    expected = {"pretrain": {100, 200, 300}, "cd100": {150}, "cd200": {300}}
    table = collect_results(load_jobs(CONFIG, fixes=fixes[1::2]))
    for width in (32, 64, 128):
        exp = f"{slurm_job_prefix}h{width}"
        for tag, iterations in expected.items():
            folder = tmp_path / "runs" / "gpt2_deepspeed" / exp / ("" if tag == "pretrain" else f"cooldown_s{tag[2:]}")
            markers = {int(path.stem.split("_")[1]) for path in (folder / "converted_checkpoints").glob("*.done")}
            assert markers == iterations, (exp, tag)
            for iteration in iterations:
                assert len(list((folder / "eval_results" / f"iter_{iteration}").rglob("results_*.json"))) == 1
            evaluated = {row["iteration"] for row in table.rows
                         if row["EXP"] == exp and row["PHASE_TAG"] == tag and row.get("grammar_ppl/word_perplexity")}
            assert evaluated == iterations, (exp, tag)
