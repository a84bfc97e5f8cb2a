"""Token milestones -> steps (`orch cooldown milestones`, helpers/build_checkpoints_from_tokens.py).
Expected values computed by hand in the comments."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from orchestrator.cli import main as orch_main
from orchestrator.errors import UserError
from orchestrator.planning.milestones import (
    Milestone,
    build_milestones,
    format_table,
    parse_tokens_per_step,
    round_half_up,
)

REPO = Path(__file__).resolve().parent.parent


def test_round_half_up_to_a_multiple() -> None:
    assert round_half_up(124, 50) == 100
    assert round_half_up(125, 50) == 150  # tie goes up; round(2.5) * 50 would be 100
    assert round_half_up(175, 50) == 200
    assert round_half_up(Fraction(2499, 2), 50) == 1250  # 1249.5 -> 24.99 multiples -> 25
    assert round_half_up(-25, 50) == 0  # ties towards +infinity
    assert round_half_up(-26, 50) == -50


def test_default_table() -> None:
    # tokens/step = 8192*6144 = 50331648.
    # i=1: 1e12/50331648 = 19868.35 -> 19850; i=7: 139078.4 -> 139100 = final_steps.
    # cooldown = 0.05 * 139100 = 6955; rollback 1: 19850-6955 = 12895 -> 12900; rollback 7: 132145 -> 132150.
    table = build_milestones()
    assert [m.id for m in table] == [1, 2, 3, 4, 5, 6, 7]
    assert table[0] == Milestone(1, 19850, 12900)
    assert table[-1] == Milestone(7, 139100, 132150)
    # i=4: 79473.4 -> 79450; rollback 79450-6955 = 72495 -> 72500.
    assert table[3] == Milestone(4, 79450, 72500)


def test_ties_round_up_not_to_even() -> None:
    # tokens/step = 8e9: milestone i is 125*i steps. 125 -> 150 (half up; banker's gives 100), 250 -> 250,
    # 375 -> 400 (half up; banker's gives 400 too), 500 -> 500; final 500, cooldown 0.1*500 = 50:
    # rollbacks 150-50 = 100, 250-50 = 200, 400-50 = 350, 450.
    table = build_milestones(ttokens=5, tokens_per_step=8 * 10**9, cooldown_percent="0.1", round_to=50)
    assert [(m.steps_mod, m.steps_rollback) for m in table] == [(150, 100), (250, 200), (400, 350), (500, 450)]


def test_rollback_uses_the_exact_percent() -> None:
    # steps 1000, 2000, 3000 (tokens/step 1e9); cooldown 0.05 * 3000 = 150; 1000-150 = 850 is a tie at
    # --round 100 -> 900. With the double 0.05 (0.05000000000000000277) taken exactly it would be 849.99.. -> 800.
    table = build_milestones(ttokens=4, tokens_per_step=10**9, cooldown_percent=0.05, round_to=100)
    assert [m.steps_rollback for m in table] == [900, 1900, 2900]


def test_cooldown_longer_than_the_run_gives_non_positive_rollbacks() -> None:
    # final 7000 (tokens/step 1e9), cooldown 0.5*7000 = 3500: milestone 1 -> 1000-3500 = -2500, 3 -> -500, 4 -> 500.
    table = build_milestones(ttokens=8, tokens_per_step=10**9, cooldown_percent="0.5", round_to=50)
    assert [m.steps_rollback for m in table[:4]] == [-2500, -1500, -500, 500]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ttokens": 1}, "--ttokens: need at least 2"),
        ({"round_to": 0}, "--round: must be a positive integer"),
        ({"cooldown_percent": "1"}, r"--cooldown-percent: must be in \[0, 1\)"),
        ({"cooldown_percent": "-0.1"}, r"--cooldown-percent: must be in \[0, 1\)"),
        ({"cooldown_percent": "five"}, "--cooldown-percent: 'five' is not a number"),
        ({"tokens_per_step": 10**13}, "round to step 0"),
    ],
)
def test_bad_inputs(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        build_milestones(**kwargs)


def test_tokens_per_step_may_be_written_as_a_product() -> None:
    assert parse_tokens_per_step("8192*6144") == 50331648
    assert parse_tokens_per_step(" 4096 * 1024 * 2 ") == 8388608
    assert parse_tokens_per_step("1000") == 1000
    for bad in ("8192x6144", "", "0", "-5", "1e6"):
        with pytest.raises(UserError, match="--tokens-per-step"):
            parse_tokens_per_step(bad)


def test_table_is_tab_separated_with_header() -> None:
    assert format_table([Milestone(1, 100, 50), Milestone(2, 200, -10)]) == "id\tsteps_mod\tsteps_rollback\n1\t100\t50\n2\t200\t-10\n"


def test_orch_writes_the_tsv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ck.tsv"
    argv = ["cooldown", "milestones", "--ttokens", "3", "--tokens-per-step", "1000000000", "--round", "100", "--out", str(out)]
    assert orch_main(argv) == 0
    # steps 1000, 2000; cooldown 0.05*2000 = 100.
    expected = "id\tsteps_mod\tsteps_rollback\n1\t1000\t900\n2\t2000\t1900\n"
    assert out.read_text() == expected
    assert capsys.readouterr().out == expected


def test_helper_script_with_defaults(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "helpers" / "build_checkpoints_from_tokens.py")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "checkpoints.tsv").read_text().splitlines()
    assert lines[0] == "id\tsteps_mod\tsteps_rollback"
    assert lines[1] == "1\t19850\t12900" and lines[-1] == "7\t139100\t132150"


def test_helper_script_bad_input(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "helpers" / "build_checkpoints_from_tokens.py"), "--round", "0"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == "--round: must be a positive integer, got 0"
    assert not (tmp_path / "checkpoints.tsv").exists()
