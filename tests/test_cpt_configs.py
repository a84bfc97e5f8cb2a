"""The continual pre-training configs: stages chain, mixes resolve per stage, schedules pass `orch lr check`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from campaign_fixtures import make_checkpoint
from orchestrator.config import load_jobs
from orchestrator.planning import data_mix

REPO = Path(__file__).resolve().parents[1]


def orch(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True, cwd=cwd)


def test_quickstart_stages_chain_to_the_previous_stage_end(monkeypatch):
    monkeypatch.chdir(REPO)
    trains = {job.params["RUN"]: job.params for job in load_jobs("configs/cpt_quickstart.yaml") if job.params["MODE"] == "train"}
    assert len(trains) == 13
    for mix in ("naive", "replay5", "mixA", "mixB"):
        assert trains[f"{mix}_s1"]["INIT_FROM"] == "runs/cpt_quickstart/pretrain"
        assert int(trains[f"{mix}_s1"]["INIT_ITER"]) == int(trains["pretrain"]["TRAIN_ITERS"]) == 400
        for stage in (2, 3):
            this, previous = trains[f"{mix}_s{stage}"], trains[f"{mix}_s{stage - 1}"]
            assert this["INIT_FROM"] == previous["RUN_DIR"] and int(this["INIT_ITER"]) == int(previous["TRAIN_ITERS"])
            assert this["start_condition_cmd"] == f"orch ckpt link {previous['RUN_DIR']} {this['RUN_DIR']} {this['INIT_ITER']}"


def test_quickstart_mixes_follow_the_recipe(monkeypatch):
    monkeypatch.chdir(REPO)
    jobs = {job.params["RUN"]: job for job in load_jobs("configs/cpt_quickstart.yaml", filters=["MODE=train"])}
    mixture = data_mix.job_mixture_inputs("mixB_s3", jobs["mixB_s3"].params)
    assert dict(mixture.weights) == {"D0": 0.05, "D3": 0.48, "BUFFER": 0.47} and mixture.buffer == ("D1", "D2")
    stage1 = data_mix.job_mixture_inputs("mixA_s1", jobs["mixA_s1"].params)
    assert dict(stage1.weights) == {"D0": 0.33, "D1": 0.67, "BUFFER": 0} and stage1.buffer == ()


def test_stages_recipe_plans_and_its_schedules_pass_the_lr_check():
    planned = orch("plan", "configs/cpt_stages.yaml")
    assert planned.returncode == 0 and "64 jobs" in planned.stdout
    checked = orch("lr", "check", "configs/cpt_stages.yaml", "MODE=train")
    assert checked.returncode == 0, checked.stdout[-2000:]
    assert checked.stdout.strip().endswith("32 schedule(s) checked, 0 cooldown(s) flagged")
    assert "mixC_s4_cooldown_train [megatron-deepspeed] cooldown: peak 0.0003" in checked.stdout
    # the flags its train_alcf.sh commands pass exist in Megatron-DeepSpeed's parser
    flags = orch("check", "configs/cpt_stages.yaml", "--entry", "train_alcf.sh", "--framework", "megatron-deepspeed",
                 "--no-data-check")
    assert flags.returncode == 0 and "32 Megatron command(s) checked: no problems" in flags.stdout


def test_a_bad_mix_in_the_quickstart_is_refused_before_anything_is_written(tmp_path):
    for relative in ("templates/quickstart", "examples/tinylm"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).symlink_to(REPO / relative)
    text = (REPO / "configs" / "cpt_quickstart.yaml").read_text()
    (tmp_path / "c.yaml").write_text(text.replace('replay5: {data_mix: {D0: 0.05, "D{STAGE}": 0.95}}',
                                                  'replay5: {data_mix: {D0: 0.05, "D{STAGE}": 0.90}}'))
    built = orch("build", "c.yaml", cwd=tmp_path)
    assert built.returncode == 2 and len(built.stderr.strip().splitlines()) == 1
    assert "job replay5_s1_train: data_mix weights sum to 0.95, not 1 (D0=0.05, D1=0.9)" in built.stderr
    assert not (tmp_path / "generated").exists()


def test_ckpt_link_cli_waits_for_a_complete_checkpoint(tmp_path):
    make_checkpoint(tmp_path / "s1" / "checkpoints", 600, track=False)
    assert orch("ckpt", "link", str(tmp_path / "s1"), str(tmp_path / "s2"), "600").stdout == "0\n"
    assert not (tmp_path / "s2").exists()
    make_checkpoint(tmp_path / "s1" / "checkpoints", 600)
    assert orch("ckpt", "link", str(tmp_path / "s1"), str(tmp_path / "s2"), "600").stdout == "1\n"
    assert (tmp_path / "s2" / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == "600"


@pytest.mark.slow
def test_results_plot_columns(tmp_path):
    pytest.importorskip("matplotlib")
    from orchestrator.campaign.results import ResultKeys, ResultTable, plot_columns

    rows = [{"MIX": mix, "iteration": it, "tokens": it * 10, "eval/loss_d0": 2 + it / 1000 * k, "eval/loss_new": 3 - it / 1000}
            for k, mix in enumerate(("naive", "mixA")) for it in (100, 200)]
    table = ResultTable(["MIX"], ["eval/loss_d0", "eval/loss_new"], rows)
    out = tmp_path / "p.png"
    assert plot_columns(table, out, ["eval/loss_d0", "eval/loss_new"], ResultKeys(model_size="MIX")) == 4
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
