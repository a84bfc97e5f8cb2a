"""The campaign pack on real checkpoints and logs: the tinylm example trains, cools down, is converted.

tinylm (examples/tinylm) writes Megatron's layout (`iter_0000100/mp_rank_00/model_optim_rng.npz`,
`latest_checkpointed_iteration.txt`) and Megatron's log lines, so this is the path a real campaign takes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from orchestrator.campaign.claims import claim_next, mark_done, pending_iterations
from orchestrator.campaign.cooldown_link import link_cooldown_checkpoint
from orchestrator.campaign.results import collect_results
from orchestrator.config import load_jobs

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "examples" / "tinylm" / "train.py"

CONFIG = """\
name: "exp_{PHASE}_{MODE}"
template: t.sbatch
sbatch_script: "s/{name}.sbatch"
output_file: "{RUN_DIR}/slurm_{MODE}.out"
cmd: "sbatch {sbatch_script}"
MODEL_SIZE: tiny
TOKENS_PER_STEP: 256
PHASE:
  - PRETRAIN: {RUN_DIR: "L/exp"}
  - COOLDOWN: {RUN_DIR: "L/exp/cooldown_s20"}
MODE: [TRAIN, CONVERT_EVAL]
"""


def train(cwd: Path, run_dir: str, train_iters: int, *extra: str) -> None:
    log = cwd / run_dir / "slurm_TRAIN.out"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, str(TRAIN), "--hidden-size", "16", "--lr", "3e-3", "--train-iters", str(train_iters),
        "--lr-warmup-iters", "10", "--lr-decay-style", "WSD", "--lr-wsd-decay-style", "linear",
        "--lr-wsd-decay-iters", "40", "--micro-batch-size", "8", "--seq-length", "32", "--eval-iters", "2",
        "--save", f"{run_dir}/checkpoints", "--load", f"{run_dir}/checkpoints", "--save-interval", "100",
        "--eval-interval", "50", "--log-interval", "50", *extra,
    ]
    with open(log, "w") as out:
        subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=300)


def test_pretrain_cooldown_convert_and_collect(tmp_path, monkeypatch):
    train(tmp_path, "L/exp", 300)
    assert pending_iterations(tmp_path / "L/exp") == [100, 200, 300]
    assert link_cooldown_checkpoint(str(tmp_path / "L"), "exp", 200, "20")
    train(tmp_path, "L/exp/cooldown_s20", 250, "--override-opt_param-scheduler")
    cooldown_log = (tmp_path / "L/exp/cooldown_s20/slurm_TRAIN.out").read_text()
    assert "after training is done" in cooldown_log
    assert "successfully loaded checkpoint from L/exp/cooldown_s20/checkpoints" in cooldown_log
    assert "at iteration 200" in cooldown_log  # started from the linked pretraining checkpoint
    # the linked start belongs to the pretraining run: the cooldown converter starts above it
    assert pending_iterations(tmp_path / "L/exp/cooldown_s20", min_iter=201) == [250]
    converted = []
    for run_dir, min_iter in (("L/exp", 0), ("L/exp/cooldown_s20", 201)):
        while (iteration := claim_next(tmp_path / run_dir, min_iter)) is not None:
            converted.append((run_dir, iteration))
            mark_done(tmp_path / run_dir, iteration)
    assert converted == [("L/exp", 100), ("L/exp", 200), ("L/exp", 300), ("L/exp/cooldown_s20", 250)]
    (tmp_path / "c.yaml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    table = collect_results(load_jobs("c.yaml"))
    losses = {(row["PHASE"], row["iteration"]): row["log_val_loss"] for row in table.rows}
    assert {key for key in losses if key[0] == "PRETRAIN"} == {("PRETRAIN", i) for i in (50, 100, 150, 200, 250, 300)}
    assert {key for key in losses if key[0] == "COOLDOWN"} == {("COOLDOWN", 250)}
    assert all(2.0 < loss < 6.0 for loss in losses.values())
    assert {row["tokens"] for row in table.rows if row["iteration"] == 250} == {250 * 256}
