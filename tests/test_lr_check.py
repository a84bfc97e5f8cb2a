"""`orch lr check`: campaign schedules, cooldown branches and the S/T mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.errors import UserError
from orchestrator.planning import lr_check

PRETRAIN = dict(LR=3e-4, MIN_LR=3e-5, TRAIN_ITERS=10_000, LR_WARMUP_ITERS=100, LR_DECAY_STYLE="constant",
                LR_FRAMEWORK="megatron-deepspeed", PHASE="pretrain")


def cooldown(resume: int, total: int, frac: float) -> dict:
    return dict(PRETRAIN, PHASE="cooldown", RESUME_STEP=resume, TRAIN_ITERS=total,
                LR_CONSTANT_PLUS_COOLDOWN=True, LR_CONSTANT_PLUS_COOLDOWN_FRAC=frac)


def test_right_fraction_passes_and_s_over_t_is_flagged() -> None:
    # S = 4000, T = 5000: the cooldown's share is (T - S) / T = 0.2; S / T = 0.8 decays from step 1000
    report = lr_check.check_named_params(
        [("pre", PRETRAIN), ("good", cooldown(4000, 5000, 0.2)), ("bad", cooldown(4000, 5000, 0.8))]
    )
    by_name = {job.schedule.name: job for job in report.jobs}
    assert by_name["good"].decay_start == 4000 and not by_name["good"].flagged
    assert by_name["good"].parent is not None and by_name["good"].parent.name == "pre"
    assert by_name["good"].warnings == []  # continues the pretrain curve at 3e-4
    bad = by_name["bad"]
    assert bad.decay_start == 1000
    assert bad.flagged and "S/T mistake" in bad.problems[0] and "0.2" in bad.problems[0]
    assert bad.warnings and "jumps" in bad.warnings[0]
    assert [job.schedule.name for job in report.flagged] == ["bad"]


def test_megatron_lm_wsd_cooldown_and_a_cooldown_that_never_decays() -> None:
    pretrain = dict(LR=1e-3, TRAIN_ITERS=100_000, LR_DECAY_STYLE="WSD", LR_WSD_DECAY_ITERS=10_000)
    right = dict(pretrain, PHASE="cooldown", RESUME_STEP=30_000, TRAIN_ITERS=36_000, LR_WSD_DECAY_ITERS=6_000)
    wrong = dict(right, LR_WSD_DECAY_ITERS=3_000)  # decay starts at 33000
    constant = dict(right, LR_DECAY_STYLE="constant")
    report = lr_check.check_named_params(
        [("pre", pretrain), ("right", right), ("wrong", wrong), ("flat", constant)]
    )
    flags = {job.schedule.name: job for job in report.jobs}
    assert flags["right"].decay_start == 30_000 and not flags["right"].flagged
    assert flags["wrong"].decay_start == 33_000 and "not at its resume step 30000" in flags["wrong"].problems[0]
    assert flags["flat"].decay_start is None and "never decays" in flags["flat"].problems[0]


def test_lowercase_keys_lr_schedule_block_and_string_values() -> None:
    params = {"lr": "0.001", "lr_schedule": {"framework": "schedules-and-scaling", "ITERATIONS": "1000",
                                             "warmup_steps": 0, "wsd_fract_decay": 0.25},
              "phase": "cooldown", "resume_step": "750"}
    schedule = lr_check.schedule_from_params("s", params)
    assert schedule is not None and schedule.params["iterations"] == 1000
    assert lr_check.decay_start(schedule) == 750


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (dict(LR=1e-3), "job1.*either --train-iters or --train-samples"),
        (dict(LR=1e-3, TRAIN_ITERS="ten"), "TRAIN_ITERS = 'ten'"),
        (dict(LR=1e-3, TRAIN_ITERS=10, PHASE="cooldown"), "resume step"),
        (dict(LR=1e-3, TRAIN_ITERS=10, LR_FRAMEWORK="keras"), "LR_FRAMEWORK"),
    ],
)
def test_bad_params_name_job_and_key(params: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        lr_check.check_named_params([("job1", params)])


CAMPAIGN = """
template: t.sbatch
sbatch_script: "s/{name}.sbatch"
output_file: "logs/{name}.out"
cmd: "sbatch {sbatch_script}"
LR: 3.0e-4
MIN_LR: 3.0e-5
LR_FRAMEWORK: megatron-deepspeed
LR_DECAY_STYLE: constant
LR_WARMUP_ITERS: 100
PHASE:
  - pretrain: {name: pre, TRAIN_ITERS: 10000}
  - cooldown:
      LR_CONSTANT_PLUS_COOLDOWN: true
      RESUME_STEP: 4000
      TRAIN_ITERS: 5000
      run:
        - good: {name: cd_good, LR_CONSTANT_PLUS_COOLDOWN_FRAC: 0.2}
        - bad: {name: cd_bad, LR_CONSTANT_PLUS_COOLDOWN_FRAC: 0.8}
"""


def test_cli_check_reports_and_exits_1_on_a_flagged_cooldown(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "campaign.yaml"
    config.write_text(CAMPAIGN)
    plot = tmp_path / "lr.png"
    assert main(["lr", "check", str(config), "--plot", str(plot)]) == 1
    out = capsys.readouterr().out
    assert "cd_bad" in out and "FLAGGED" in out and "S/T mistake" in out
    assert plot.stat().st_size > 1000
    # the same campaign without the bad branch passes
    assert main(["lr", "check", str(config), "name=pre,cd_good"]) == 0
    assert "0 cooldown(s) flagged" in capsys.readouterr().out


def test_cli_check_on_a_campaign_without_lr(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "campaign.yaml"
    config.write_text(CAMPAIGN.replace("LR: 3.0e-4", "LEARNING: 1").replace("MIN_LR", "MIN"))
    assert main(["lr", "check", str(config)]) == 2
    assert "no job has an LR schedule" in capsys.readouterr().err


def test_warmup_landing_a_rounding_error_above_the_peak_is_still_the_plateau() -> None:
    # 1e-4 * 3051 / 3051 = 1.0000000000000002e-4: the step after warmup is not the start of the decay
    pretrain = dict(LR=1e-4, MIN_LR=0.0, TRAIN_ITERS=122_070, LR_WARMUP_ITERS=3051, LR_DECAY_STYLE="WSD",
                    LR_WSD_DECAY_ITERS=24_414)
    schedule = lr_check.schedule_from_params("pre", pretrain)
    assert schedule is not None and schedule.lr_at(3051) > schedule.lr_at(3052)
    assert lr_check.decay_start(schedule) == 122_070 - 24_414


def test_cooldown_without_parent_key_branches_from_the_most_alike_pretrain_job() -> None:
    def job(lr: float, mode: str, phase: str) -> dict:
        base = dict(LR=lr, MODE=mode, PHASE=phase, TRAIN_ITERS=1000, LR_DECAY_STYLE="WSD", LR_WSD_DECAY_ITERS=0)
        return base if phase == "pretrain" else dict(base, START_ITER=400, TRAIN_ITERS=500, LR_WSD_DECAY_ITERS=100)

    named = [(f"{phase}-{lr}-{mode}", job(lr, mode, phase))
             for lr in (1e-3, 3e-3) for phase in ("pretrain", "cooldown") for mode in ("train", "eval")]
    report = lr_check.check_named_params(named)
    for result in report.jobs:
        if result.schedule.phase == "cooldown":
            assert result.schedule.resume_step == 400  # START_ITER names the resume step too
            assert result.parent is not None
            assert result.parent.name == result.schedule.name.replace("cooldown", "pretrain")
    # two pretrain jobs equally alike: no guess, no jump check
    tie = lr_check.check_named_params([("a", job(1e-3, "train", "pretrain")), ("b", job(1e-3, "train", "pretrain")),
                                       ("cd", job(1e-3, "eval", "cooldown"))])
    assert tie.jobs[2].parent is None and not tie.flagged


@pytest.mark.parametrize("config, selection", [("configs/quickstart.yaml", "MODE=train"),
                                                ("configs/scaling_exps.yaml", "MODE=TRAIN")])
def test_shipped_campaigns_pass_the_check_with_every_cooldown_on_its_pretrain_curve(config, selection) -> None:
    from orchestrator.config import load_jobs

    jobs = load_jobs(Path(__file__).resolve().parents[1] / config, filters=[selection])
    report = lr_check.check_jobs(jobs)
    cooldowns = [job for job in report.jobs if job.schedule.phase == "cooldown"]
    assert cooldowns and not report.flagged and not report.skipped
    for job in cooldowns:
        assert job.parent is not None and job.parent.phase == "pretrain"
        assert job.parent.params["lr"] == job.schedule.params["lr"]
        assert job.decay_start == job.schedule.resume_step and job.warnings == []


def test_shipped_cooldowns_campaign_flags_the_s_over_t_mistake() -> None:
    result = subprocess.run([sys.executable, "-m", "orchestrator", "lr", "check", "configs/cooldowns.yaml"],
                            capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("cd_good ") and lines[1].endswith("  ok")
    assert lines[2].startswith("cd_bad ") and lines[2].endswith("FLAGGED")
    assert "lr_constant_plus_cooldown_frac = 0.8 (the S/T mistake), use (T-S)/T = 0.2" in result.stdout
