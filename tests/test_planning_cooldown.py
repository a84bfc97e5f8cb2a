"""Cooldown commands (`orch cooldown cmds`, helpers/make_cooldown_cmds.py) and sweeps (`orch cooldown sweep`,
helpers/gen_cooldown_sweep.sh): expected values computed by hand in the comments."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main as orch_main
from orchestrator.errors import UserError
from orchestrator.planning import cooldown_cmds as cc
from orchestrator.formulas import cooldown_frac as fc
from orchestrator.planning.lr_schedules import alcf_launch
from orchestrator.planning.cooldown_sweep import plan_sweep, write_sweep
from orchestrator.planning.milestones import Milestone, build_milestones

REPO = Path(__file__).resolve().parent.parent
OPTIONS = cc.CommandOptions(load="/ckpt/run1", data_file_list="lists/phase1.txt")


def frac_of(block: str) -> str:
    return block.split("--lr_constant_plus_cooldown_frac=")[1].split()[0]


# --- the frac ---------------------------------------------------------------------------------------


def test_frac_is_the_cooldown_share_by_default() -> None:
    # S=3000, R=1000: T=4000, cooldown share R/T = 0.25 (the old tool's S/T = 0.75 would decay from step 1000).
    block = cc.render_block(cc.CooldownRun(1, 3000, 1000), OPTIONS)
    assert frac_of(block) == "0.25"
    assert "TRAIN_ITERS=4000 \\" in block
    assert "frac_convention=cooldown" in block.splitlines()[0]


def test_constant_convention_gives_the_constant_share() -> None:
    options = cc.CommandOptions(load="/c", data_file_list="l", frac_convention="constant")
    block = cc.render_block(cc.CooldownRun(1, 3000, 1000), options)
    assert frac_of(block) == "0.75"
    assert "frac_convention=constant" in block.splitlines()[0]


def test_frac_digits_recover_the_step_count() -> None:
    # 100/1100 = 0.0909...: 0.091 would give 100.1 steps; 0.090909091 * 1100 = 100.0000001.
    assert fc.format_frac(100, 1100) == "0.090909091"
    assert fc.format_frac(1, 2) == "0.5"
    assert fc.format_frac(1, 10_000_000) == "0.0000001"  # plain decimal, never 1E-7


@pytest.mark.parametrize("resume", [1, 7, 999, 19850, 123457, 9_999_991])
@pytest.mark.parametrize("cooldown", [1, 3, 100, 2000, 77777])
def test_frac_times_train_iters_gives_back_r(resume: int, cooldown: int) -> None:
    total = resume + cooldown
    for numerator in (cooldown, resume):
        product = float(fc.format_frac(numerator, total)) * total
        assert numerator <= product <= numerator + fc.FRAC_STEP_TOLERANCE
        assert int(product) == numerator and round(product) == numerator


def test_cooldown_longer_than_the_resumed_run_is_fine() -> None:
    # S=100, R=900: T=1000, the cooldown is 90% of TRAIN_ITERS.
    block = cc.render_block(cc.CooldownRun(3, 100, 900), OPTIONS)
    assert frac_of(block) == "0.9"
    assert block.startswith("# id=3 resume_step=100 cooldown_steps=900 total_iters=1000 frac=0.9 ")


# --- the block ---------------------------------------------------------------------------------------


def test_block_layout() -> None:
    options = cc.CommandOptions(
        load="/ckpt/run 1", data_file_list="lists/p1.txt", grad_acc_steps=4, opt="adamw", min_lr="1e-5", extra_args="--save out"
    )
    expected = (
        "# id=2 resume_step=1500 cooldown_steps=500 total_iters=2000 frac=0.25 frac_convention=cooldown (R/T, the cooldown share)\n"
        "LR_DECAY_STYLE=constant \\\n"
        "OPT=adamw \\\n"
        "OVERRIDE_CKPT_OPT_PARAM=1 \\\n"
        "TRAIN_ITERS=2000 \\\n"
        "GRAD_ACC_STEPS=4 \\\n"
        "LOAD='/ckpt/run 1' \\\n"
        "DATA_FILE_LIST=lists/p1.txt \\\n"
        "bash train_alcf.sh \\\n"
        "  --override-opt_param-scheduler \\\n"
        "  --min-lr=1e-5 \\\n"
        "  --lr_constant_plus_cooldown \\\n"
        "  --lr_constant_plus_cooldown_frac=0.25 \\\n"
        "  --save out"
    )
    assert cc.render_block(cc.CooldownRun(2, 1500, 500), options) == expected


def test_no_override_ckpt_opt_drops_the_env_line_and_the_override_flag() -> None:
    options = cc.CommandOptions(load="/c", data_file_list="l", override_ckpt_opt_param=False)
    block = cc.render_block(cc.CooldownRun(1, 10, 10), options)
    env, arguments = alcf_launch.split_command(block)
    assert "OVERRIDE_CKPT_OPT_PARAM" not in env
    # train_alcf.sh then adds --use-checkpoint-opt_param-scheduler; with --override too the trainer stops
    assert "--override-opt_param-scheduler" not in arguments
    run = alcf_launch.trainer_run(alcf_launch.wrapper_argv(env, arguments, 8))
    assert run.use_checkpoint_opt_param_scheduler and not run.override_opt_param_scheduler


def test_the_old_block_with_both_scheduler_flags_is_what_the_trainer_refuses() -> None:
    env = {"LR_DECAY_STYLE": "constant", "TRAIN_ITERS": "20"}  # OVERRIDE_CKPT_OPT_PARAM left out
    with pytest.raises(UserError, match="both override and use-checkpoint are set"):
        alcf_launch.trainer_run(alcf_launch.wrapper_argv(env, ["--override-opt_param-scheduler"], 1))


@pytest.mark.parametrize("override", [True, False])
@pytest.mark.parametrize("extra", ["", "--save ckpt_cd --seq-length 4096", "--lr 3e-4 --min-lr 1e-5"])
@pytest.mark.parametrize(("resume", "cooldown"), [(19850, 2000), (57, 43), (100, 1000), (1, 1), (39750, 4000)])
@pytest.mark.parametrize("grad_acc", [1, 2])
def test_every_emitted_block_cools_down_from_its_resume_step_in_the_trainer(
    override: bool, extra: str, resume: int, cooldown: int, grad_acc: int
) -> None:
    options = cc.CommandOptions(load="/c", data_file_list="l", override_ckpt_opt_param=override, extra_args=extra,
                                grad_acc_steps=grad_acc)
    run = cc.CooldownRun(1, resume, cooldown)
    env, arguments = alcf_launch.split_command(cc.render_block(run, options))
    for batch in (1, 6, 96, 3072):
        trained = alcf_launch.trainer_run(alcf_launch.wrapper_argv(env, arguments, batch))
        scheduler = trained.scheduler()
        # still at the plateau at the resume step (the warmup the wrapper always sets is subtracted in floating
        # point, which can leave a 1e-8 relative dip there), and decaying right after it
        assert scheduler.lr(resume) == pytest.approx(scheduler.max_lr, rel=1e-7)
        assert scheduler.lr(resume + 1) < scheduler.max_lr * (1 - 1e-7)
        assert scheduler.lr(resume + cooldown) == scheduler.min_lr


def test_extra_args_that_move_the_cooldown_are_refused() -> None:
    options = cc.CommandOptions(load="/c", data_file_list="l", extra_args="--lr-decay-iters 30000")
    with pytest.raises(UserError, match="would cool down from iteration .* not from the resume step 19850"):
        cc.render_block(cc.CooldownRun(1, 19850, 2000), options)
    with pytest.raises(UserError, match="would not parse"):
        cc.render_block(cc.CooldownRun(1, 19850, 2000), cc.CommandOptions(load="/c", data_file_list="l",
                                                                         extra_args="--lr-decay-style wsd"))


# --- selecting runs -----------------------------------------------------------------------------------


def test_grid_is_s_times_r_labelled_by_checkpoint_ids() -> None:
    runs = cc.select_runs(None, ["100", "200"], ["10", "20"], ["7", "9"])
    assert [(r.id, r.resume_step, r.cooldown_steps) for r in runs] == [(7, 100, 10), (7, 100, 20), (9, 200, 10), (9, 200, 20)]
    assert [r.id for r in cc.select_runs(None, ["100", "200"], ["10"])] == [1, 2]


def test_pairs_ids_auto_increment_where_omitted() -> None:
    runs = cc.parse_pairs(["100:10", "5:200:20", "300:30"])
    assert [(r.id, r.resume_step, r.cooldown_steps, r.total_iters) for r in runs] == [
        (1, 100, 10, 110),
        (5, 200, 20, 220),
        (6, 300, 30, 330),
    ]


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["0:10"], "must be a positive integer, got 0"),
        (["100:0"], "must be a positive integer, got 0"),
        (["100:-5"], "must be a positive integer, got -5"),
        (["1:2:3:4"], "expected S:R or ID:S:R"),
        (["100"], "expected S:R or ID:S:R"),
        (["abc:10"], "'abc' is not an integer"),
    ],
)
def test_bad_pairs_are_named(pairs: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        cc.parse_pairs(pairs)
    assert repr(pairs[0]) in str(caught.value)


def test_bad_grid_inputs() -> None:
    with pytest.raises(UserError, match=r"-S/--checkpoint-iters: must be a positive integer, got 0"):
        cc.select_runs(None, ["0"], ["10"])
    with pytest.raises(UserError, match=r"-R/--cooldown-steps: must be a positive integer, got 0"):
        cc.select_runs(None, ["10"], ["0"])
    with pytest.raises(UserError, match="--checkpoint-ids has 1 entries but -S/--checkpoint-iters has 2"):
        cc.select_runs(None, ["10", "20"], ["5"], ["1"])
    with pytest.raises(UserError, match="cannot be combined"):
        cc.select_runs(["1:2"], ["10"], ["5"])


def test_nothing_to_emit_says_exactly_what_to_provide() -> None:
    for pairs, s, r in [(None, None, None), (None, ["100"], None), (None, None, ["10"])]:
        with pytest.raises(UserError) as caught:
            cc.select_runs(pairs, s, r)
        assert str(caught.value) == "Provide either --pairs OR both --checkpoint-iters and --cooldown-steps."


# --- command line, helper script, emitted script ------------------------------------------------------


def run_helper(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "helpers" / "make_cooldown_cmds.py"), *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_helper_without_runs_fails_with_the_exact_message(tmp_path: Path) -> None:
    result = run_helper("--load", "/c", "--data-file-list", "l", cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip() == "Provide either --pairs OR both --checkpoint-iters and --cooldown-steps."
    assert result.stdout == ""


def test_orch_cooldown_cmds_reports_bad_input_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert orch_main(["cooldown", "cmds", "--load", "/c", "--data-file-list", "l", "--pairs", "5:0"]) == 2
    err = capsys.readouterr().err
    assert "orch: error: --pairs entry '5:0'" in err and "Traceback" not in err


def test_emitted_script_runs_every_block(tmp_path: Path) -> None:
    # A stand-in training script that records what it was given, so the emitted script really runs.
    train = tmp_path / "train.sh"
    train.write_text('#!/usr/bin/env bash\necho "TRAIN_ITERS=$TRAIN_ITERS LOAD=$LOAD DATA=$DATA_FILE_LIST args=$*"\n')
    script = tmp_path / "out" / "cooldowns.sh"
    result = run_helper(
        "--load", "/ck", "--data-file-list", "d.txt", "--train-script", str(train),
        "-S", "3000", "1500", "-R", "1000", "--extra-args", "--save ckpt_cd", "--emit-sh", str(script),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("# id=") == 2
    assert script.stat().st_mode & stat.S_IXUSR
    ran = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120, check=True).stdout.splitlines()
    # T=4000, f=1000/4000; T=2500, f=1000/2500.
    assert ran == [
        "TRAIN_ITERS=4000 LOAD=/ck DATA=d.txt args=--override-opt_param-scheduler --min-lr=2e-5 "
        "--lr_constant_plus_cooldown --lr_constant_plus_cooldown_frac=0.25 --save ckpt_cd",
        "TRAIN_ITERS=2500 LOAD=/ck DATA=d.txt args=--override-opt_param-scheduler --min-lr=2e-5 "
        "--lr_constant_plus_cooldown --lr_constant_plus_cooldown_frac=0.4 --save ckpt_cd",
    ]


# --- sweep ----------------------------------------------------------------------------------------------


def test_sweep_writes_exact_and_rollback_scripts_per_id(tmp_path: Path) -> None:
    table = build_milestones()  # defaults: ids 1..7
    scripts = write_sweep(table, 2000, tmp_path, "p1.txt", "p2.txt", OPTIONS)
    names = sorted(p.name for p in tmp_path.iterdir())
    expected = sorted([f"cooldown_id{i}_{kind}.sh" for i in range(1, 8) for kind in ("exact", "rollback")] + ["checkpoints.tsv"])
    assert names == expected
    assert len(scripts) == 14
    exact1 = (tmp_path / "cooldown_id1_exact.sh").read_text()
    # Milestone 1: steps_mod 19850, cooldown 2000 -> TRAIN_ITERS 21850; phase-1 list.
    assert exact1.count("# id=") == 1
    assert "TRAIN_ITERS=21850 \\" in exact1 and "DATA_FILE_LIST=p1.txt \\" in exact1
    rollback5 = (tmp_path / "cooldown_id5_rollback.sh").read_text()
    # Milestone 5: steps_rollback 92400 -> TRAIN_ITERS 94400; IDs above 4 use the phase-2 list.
    assert "TRAIN_ITERS=94400 \\" in rollback5 and "DATA_FILE_LIST=p2.txt \\" in rollback5
    assert os.access(tmp_path / "cooldown_id7_rollback.sh", os.X_OK)
    subprocess.run(["bash", "-n", str(tmp_path / "cooldown_id7_rollback.sh")], check=True, timeout=60)


def test_sweep_skips_rollback_when_the_cooldown_is_longer_than_the_run(tmp_path: Path) -> None:
    table = [Milestone(1, 1000, -500), Milestone(2, 2000, 0), Milestone(3, 3000, 1500)]
    planned = plan_sweep(table, 100, tmp_path, "a", "b", phase_split=2)
    assert [(s.path.name, s.data_file_list) for s in planned] == [
        ("cooldown_id1_exact.sh", "a"),
        ("cooldown_id2_exact.sh", "a"),
        ("cooldown_id3_exact.sh", "b"),
        ("cooldown_id3_rollback.sh", "b"),
    ]


def test_gen_cooldown_sweep_sh_uses_the_given_python(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            "bash", str(REPO / "helpers" / "gen_cooldown_sweep.sh"), "--python", sys.executable,
            "--load", "/ck", "--cool-R", "500", "--emit-dir", "sweep", "--phase1-list", "p1.txt", "--phase2-list", "p2.txt",
            "--ttokens", "3", "--tokens-per-step", "8192*6144", "--cooldown-percent", "0.05", "--round", "50",
            "--train-script", "train.sh", "--extra-args", "--save cd",
        ],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # ttokens 3: rows 1, 2; final steps 39750, rollback = steps - 1987.5, rounded half-up to 50.
    assert (tmp_path / "sweep" / "checkpoints.tsv").read_text() == "id\tsteps_mod\tsteps_rollback\n1\t19850\t17850\n2\t39750\t37750\n"
    text = (tmp_path / "sweep" / "cooldown_id2_rollback.sh").read_text()
    assert "TRAIN_ITERS=38250 \\" in text and "bash train.sh \\" in text and text.rstrip().endswith("--save cd")


def test_sweep_needs_phase2_list_only_when_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["cooldown", "sweep", "--load", "/c", "--cool-R", "10", "--phase1-list", "p1", "--emit-dir", str(tmp_path / "s")]
    assert orch_main(base) == 2  # ids 5..7 need the phase-2 list
    assert "--phase2-list is required" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # nothing half-written
    assert orch_main(base + ["--ttokens", "5"]) == 0


# --- link -----------------------------------------------------------------------------------------------


def test_link_prints_1_and_links_the_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from campaign_fixtures import make_checkpoint

    make_checkpoint(tmp_path / "exp1" / "checkpoints", 19850)
    monkeypatch.chdir(tmp_path)
    assert orch_main(["cooldown", "link", ".", "exp1", "19850", "0.05"]) == 0
    assert capsys.readouterr().out.strip() == "1"
    assert (tmp_path / "exp1" / "cooldown_s0.05" / "checkpoints" / "iter_0019850").is_symlink()


def test_link_prints_0_when_the_checkpoint_is_not_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The real linker (orchestrator.campaign.cooldown_link) on an empty logs directory.
    assert orch_main(["cooldown", "link", str(tmp_path), "exp1", "19850", "0.05"]) == 0
    assert capsys.readouterr().out.strip() == "0"


def test_expr_cooldown_frac_gives_the_digits_cooldown_cmds_prints() -> None:
    from orchestrator.config.expressions import evaluate_expression

    assert evaluate_expression("expr(cooldown_frac(57, 100))") == fc.format_frac(57, 100) == "0.570000001"
    assert int(float(evaluate_expression("expr(cooldown_frac(57, 100))")) * 100) == 57  # 0.57 itself gives 56
