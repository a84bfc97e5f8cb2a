"""`orch results`: eval results and validation losses of a campaign in one table and one plot."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.campaign.results import ResultKeys, collect_results, flatten_metrics, read_validation_losses
from orchestrator.config import load_jobs
from orchestrator.errors import UserError

REPO = Path(__file__).resolve().parents[1]
ORCH_BIN = str(Path(sys.executable).parent / "orch")

CONFIG = """\
name: "{EXP}_{PHASE_TAG}_{MODE}"
EXP: "{MODEL_SIZE}_lr{LR}"
LOGS: logs
template: t.sbatch
sbatch_script: "scripts/{name}.sbatch"
output_file: "{RUN_DIR}/slurm_{MODE}.out"
cmd: "sbatch {sbatch_script}"
TOKENS_PER_STEP: 1000
MODEL_SIZE: [10M, 25M]
LR: [1e-3, 1e-2]
PHASE:
  - PRETRAIN: {PHASE_TAG: pre, RUN_DIR: "{LOGS}/{EXP}"}
  - COOLDOWN: {PHASE_TAG: cd, RUN_DIR: "{LOGS}/{EXP}/cooldown_s20"}
MODE: [TRAIN, CONVERT_EVAL]
"""


def megatron_log(losses: dict[int, float]) -> str:
    """Lines as Megatron prints them (validation block between dashes)."""
    lines = [" iteration       10/     200 | consumed samples: 80 | lm loss: 7.1E+00 |"]
    for iteration, loss in losses.items():
        lines += ["-" * 40, f" validation loss at iteration {iteration} | lm loss value: {loss:.6E} | lm loss PPL: 1.0E+02 | ",
                  "-" * 40]
    return "\n".join(lines) + "\n"


def lm_eval_results(acc: float) -> dict:
    return {"results": {"hellaswag": {"alias": "hellaswag", "acc,none": acc, "acc_stderr,none": 0.01}},
            "config": {"model": "hf"}, "n-shot": {"hellaswag": 0}}


@pytest.fixture
def campaign(tmp_path: Path) -> Path:
    (tmp_path / "campaign.yaml").write_text(CONFIG)
    pre = tmp_path / "logs" / "10M_lr0.001"
    pre.mkdir(parents=True)
    (pre / "slurm_TRAIN.out").write_text(megatron_log({100: 4.5, 200: 4.0}))
    for iteration, acc in ((100, 0.26), (200, 0.29)):
        (pre / "eval_results" / f"iter_{iteration}").mkdir(parents=True)
        (pre / "eval_results" / f"iter_{iteration}" / "results.json").write_text(json.dumps(lm_eval_results(acc)))
    cd = pre / "cooldown_s20"
    cd.mkdir()
    (cd / "slurm_TRAIN.out").write_text(megatron_log({150: 3.7}))
    (cd / "eval_results" / "iter_150").mkdir(parents=True)
    (cd / "eval_results" / "iter_150" / "results.json").write_text(json.dumps({**lm_eval_results(0.3), "val_loss": 9.9}))
    return tmp_path


def test_validation_losses_and_metrics_are_parsed(campaign):
    assert read_validation_losses(campaign / "logs" / "10M_lr0.001" / "slurm_TRAIN.out") == {100: 4.5, 200: 4.0}
    assert read_validation_losses(campaign / "missing.out") == {}
    metrics = flatten_metrics({**lm_eval_results(0.5), "val_loss": 2.0})
    assert metrics == {"val_loss": 2.0, "hellaswag/acc": 0.5, "hellaswag/acc_stderr": 0.01}


def test_rows_per_run_and_iteration(campaign, monkeypatch):
    monkeypatch.chdir(campaign)
    table = collect_results(load_jobs("campaign.yaml"))
    assert table.param_columns == ["EXP", "MODEL_SIZE", "LR", "PHASE", "PHASE_TAG"]
    rows = {(row["PHASE"], row["iteration"]): row for row in table.rows}
    assert set(rows) == {("PRETRAIN", 100), ("PRETRAIN", 200), ("COOLDOWN", 150)}  # runs without results: no rows
    assert rows[("PRETRAIN", 200)] == {
        "EXP": "10M_lr0.001", "MODEL_SIZE": "10M", "LR": 0.001, "PHASE": "PRETRAIN", "PHASE_TAG": "pre",
        "iteration": 200, "tokens": 200_000, "val_loss": 4.0, "hellaswag/acc": 0.29, "hellaswag/acc_stderr": 0.01,
    }
    assert rows[("COOLDOWN", 150)]["val_loss"] == 3.7  # the log wins over results.json's val_loss


def test_missing_run_dir_key_is_a_user_error(campaign, monkeypatch):
    monkeypatch.chdir(campaign)
    with pytest.raises(UserError, match="'RUN_FOLDER'"):
        collect_results(load_jobs("campaign.yaml"), ResultKeys(run_dir="RUN_FOLDER"))


def test_cli_writes_csv_and_plot(campaign):
    result = subprocess.run(
        [ORCH_BIN, "results", "campaign.yaml", "--csv", "out/results.csv", "--plot", "out/loss.png"],
        capture_output=True, text=True, cwd=campaign, env=dict(os.environ, COLUMNS="200"),
    )
    assert result.returncode == 0, result.stderr
    assert "3 result row(s) written to out/results.csv" in result.stdout
    assert "plotted 2 curve(s)" in result.stdout
    assert "hellaswag/acc" in result.stdout  # the console table
    with open(campaign / "out" / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["PHASE"], r["iteration"], r["tokens"], r["val_loss"]) for r in rows] == [
        ("PRETRAIN", "100", "100000", "4.5"), ("PRETRAIN", "200", "200000", "4.0"), ("COOLDOWN", "150", "150000", "3.7")]
    png = (campaign / "out" / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_cli_filters_and_empty_campaign(campaign):
    result = subprocess.run([ORCH_BIN, "results", "campaign.yaml", "MODEL_SIZE=25M", "--plot", "none.png"],
                            capture_output=True, text=True, cwd=campaign)
    assert result.returncode == 0, result.stderr
    assert "0 result row(s)" in result.stdout and "no validation losses to plot" in result.stdout
    assert not (campaign / "none.png").exists()
    assert (campaign / "campaign_results.csv").read_text().startswith("EXP,MODEL_SIZE,LR,PHASE,PHASE_TAG,iteration")


def test_plot_without_matplotlib_is_a_one_line_error_and_writes_nothing(campaign, monkeypatch, capsys):
    from orchestrator.cli import main

    monkeypatch.chdir(campaign)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what `import matplotlib` sees without the extra
    assert main(["results", "campaign.yaml", "--csv", "out/results.csv", "--plot", "out/loss.png"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == ["orch: error: --plot needs matplotlib: pip install 'orch[plot]'"]
    assert not (campaign / "out").exists()
