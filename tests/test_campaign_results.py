"""`orch results`: eval results and validation losses of a campaign in one table and one plot."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import shutil

from orchestrator.campaign.results import ResultKeys, collect_results, lm_eval_metrics, read_eval_results, read_log_losses
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
    assert read_log_losses(campaign / "logs" / "10M_lr0.001" / "slurm_TRAIN.out") == {
        100: {"log_val_loss": 4.5}, 200: {"log_val_loss": 4.0}}
    assert read_log_losses(campaign / "missing.out") == {}
    metrics = lm_eval_metrics({**lm_eval_results(0.5), "val_loss": 2.0, "date": 1795485669.6})
    assert metrics == {"hellaswag": {"hellaswag/acc": 0.5, "hellaswag/acc_stderr": 0.01}}


MEGATRON_LM_END = """\
 validation loss at iteration 1000 | lm loss value: 2.100000E+00 | lm loss PPL: 8.1E+00 |
 validation loss at iteration 1000 on validation set | lm loss value: 2.050000E+00 | lm loss PPL: 7.8E+00 |
 validation loss at iteration 1000 on test set | lm loss value: 2.250000E+00 | lm loss PPL: 9.5E+00 |
 validation-wiki loss at iteration 1000 | lm loss value: 2.500000E+00 | lm loss PPL: 1.2E+01 |
"""
# argonne-lcf/Megatron-DeepSpeed prints `value=` with no separator before the PPL, and "N-sample draw from"
MEGATRON_DEEPSPEED_END = """\
 validation loss at iteration 500 | lm loss value=3.100000lm loss PPL=22.197951
 validation loss at iteration 500 on 2048-sample draw from validation set | lm loss value=3.050000lm loss PPL=21.1
 validation loss at iteration 500 on 2048-sample draw from test set | lm loss value=3.300000lm loss PPL=27.1
"""


@pytest.mark.parametrize(("text", "expected"), [
    (MEGATRON_LM_END, {1000: {"log_val_loss": 2.05, "log_test_loss": 2.25, "log_val_loss-wiki": 2.5}}),
    (MEGATRON_DEEPSPEED_END, {500: {"log_val_loss": 3.05, "log_test_loss": 3.3}}),
])
def test_test_loss_is_never_taken_for_the_last_validation_loss(tmp_path, text, expected):
    log = tmp_path / "train.out"
    log.write_text(text)
    assert read_log_losses(log) == expected


LM_EVAL_RUN = REPO / "tests" / "fixtures" / "lm_eval" / "run"  # written by real lm_eval: scripts/record-lm-eval-fixtures.sh


def test_real_lm_eval_files_in_every_layout_give_metrics_only():
    notes: list[str] = []
    found = read_eval_results(LM_EVAL_RUN, notes)
    assert sorted(found) == [100, 200, 300]  # DIR/<model>/results_<date>.json, <stem>_<date>.json, two files
    for iteration, metrics in found.items():
        source = next((LM_EVAL_RUN / "eval_results" / f"iter_{iteration:07d}").rglob("*.json"))
        data = json.loads(source.read_text())
        if iteration != 300:
            assert metrics["tinyqa/acc"] == data["results"]["tinyqa"]["acc,none"]
            assert metrics["tinytext/word_perplexity"] == data["results"]["tinytext"]["word_perplexity,none"]
            assert metrics["tinysuite/acc"] == data["groups"]["tinysuite"]["acc,none"]
        # run metadata and per-task bookkeeping never become columns; every column is task/metric
        assert isinstance(data["date"], float) and data["results"]["tinyqa"]["sample_len"] == 12
        assert all("/" in column and "sample_len" not in column and "sample_count" not in column for column in metrics)
        assert not any(column.startswith(("date", "eval/")) for column in metrics)
    assert set(found[200]) >= {"tinyqa/acc", "tinyqa/acc_norm", "tinyqa/acc_stderr", "tinytext/bits_per_byte"}


def test_newest_lm_eval_file_wins_per_task_and_the_choice_is_noted():
    files = sorted((LM_EVAL_RUN / "eval_results" / "iter_0000300").rglob("results_*.json"))
    older, newer = (json.loads(path.read_text()) for path in files)
    assert older["results"]["tinyqa"]["acc,none"] != newer["results"]["tinyqa"]["acc,none"]
    notes: list[str] = []
    metrics = read_eval_results(LM_EVAL_RUN, notes)[300]
    assert metrics["tinyqa/acc"] == newer["results"]["tinyqa"]["acc,none"]
    assert "tinytext/word_perplexity" in metrics  # only the newer file has it
    assert len(notes) == 1 and "2 lm-eval results files" in notes[0] and files[1].name in notes[0]


def test_hf_metadata_keys_and_non_none_filters(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(LM_EVAL_RUN, run)
    path = next((run / "eval_results" / "iter_0000200").glob("*.json"))
    data = json.loads(path.read_text())
    # what lm_eval adds for a model with a tokenizer (evaluator.add_tokenizer_info), and a generative task's filter
    data.update(eot_token_id=0, max_length=2048, tokenizer_pad_token=["<pad>", "0"])
    data["results"]["tinyqa"]["exact_match,strict-match"] = 0.125
    path.write_text(json.dumps(data))
    metrics = read_eval_results(run)[200]
    assert metrics["tinyqa/exact_match,strict-match"] == 0.125
    assert not {"eot_token_id", "max_length", "eval/eot_token_id"} & set(metrics)


def test_rows_per_run_and_iteration(campaign, monkeypatch):
    monkeypatch.chdir(campaign)
    table = collect_results(load_jobs("campaign.yaml"))
    assert table.param_columns == ["EXP", "MODEL_SIZE", "LR", "PHASE", "PHASE_TAG"]
    rows = {(row["PHASE"], row["iteration"]): row for row in table.rows}
    assert set(rows) == {("PRETRAIN", 100), ("PRETRAIN", 200), ("COOLDOWN", 150)}  # runs without results: no rows
    assert rows[("PRETRAIN", 200)] == {
        "EXP": "10M_lr0.001", "MODEL_SIZE": "10M", "LR": 0.001, "PHASE": "PRETRAIN", "PHASE_TAG": "pre",
        "iteration": 200, "tokens": 200_000, "log_val_loss": 4.0, "log_test_loss": None, "hellaswag/acc": 0.29,
        "hellaswag/acc_stderr": 0.01, "run": "logs/10M_lr0.001",
    }
    # the log's and the results file's figures stay in their own columns; an lm-eval file's top level is metadata
    assert rows[("COOLDOWN", 150)]["log_val_loss"] == 3.7
    assert "val_loss" not in rows[("COOLDOWN", 150)] and "eval/val_loss" not in rows[("COOLDOWN", 150)]


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
    assert [(r["PHASE"], r["iteration"], r["tokens"], r["log_val_loss"]) for r in rows] == [
        ("PRETRAIN", "100", "100000", "4.5"), ("PRETRAIN", "200", "200000", "4.0"), ("COOLDOWN", "150", "150000", "3.7")]
    png = (campaign / "out" / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_cli_filters_and_empty_campaign(campaign):
    result = subprocess.run([ORCH_BIN, "results", "campaign.yaml", "MODEL_SIZE=25M", "--plot", "none.png"],
                            capture_output=True, text=True, cwd=campaign)
    assert result.returncode == 0, result.stderr
    assert "0 result row(s)" in result.stdout and "no losses to plot" in result.stdout
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


def test_plot_columns_must_name_a_column(campaign):
    result = subprocess.run([ORCH_BIN, "results", "campaign.yaml", "--plot", "p.png", "--plot-columns",
                             "hellaswag/acc,eval/nope"], capture_output=True, text=True, cwd=campaign)
    assert result.returncode == 2 and "--plot-columns: no column 'eval/nope'" in result.stderr
    assert not (campaign / "p.png").exists()
    drawn = subprocess.run([ORCH_BIN, "results", "campaign.yaml", "--plot", "p.png", "--plot-columns",
                            "hellaswag/acc,log_val_loss"], capture_output=True, text=True, cwd=campaign)
    assert drawn.returncode == 0 and "plotted 4 curve(s)" in drawn.stdout  # 2 runs x 2 panels
