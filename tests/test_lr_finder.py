"""LR-finder analysis on synthetic curves whose minima are known in advance."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from orchestrator.errors import UserError
from orchestrator.planning import lr_finder

LOG_LR = np.linspace(-6.0, 0.0, 400)
LRS = 10**LOG_LR


def test_one_minimum_with_noise() -> None:
    rng = np.random.default_rng(0)
    losses = (LOG_LR + 3.0) ** 2 + rng.normal(0.0, 0.02, LOG_LR.size)
    result = lr_finder.analyse(LRS, losses, smooth_frac=0.05)
    assert len(result.minima) == 1
    minimum = result.minima[0]
    assert math.log10(minimum.lr) == pytest.approx(-3.0, abs=0.05)
    assert math.log10(minimum.suggested_lr) == pytest.approx(-4.0, abs=0.05)
    assert math.log10(result.absolute_min_lr) == pytest.approx(-3.0, abs=0.1)


def test_crossing_is_interpolated_between_samples() -> None:
    # 13 samples, a parabola whose bottom (-2.37) falls between two of them; no smoothing.
    log_lr = np.linspace(-6.0, 0.0, 13)
    result = lr_finder.analyse(10**log_lr, (log_lr + 2.37) ** 2, smooth_frac=0.0)
    assert len(result.minima) == 1
    assert math.log10(result.minima[0].lr) == pytest.approx(-2.37, abs=1e-9)
    assert result.minima[0].loss == pytest.approx(0.0, abs=0.1)


def test_realistic_noisy_curve_has_one_minimum() -> None:
    # flat, falling around 10**-4.5, then blowing up: the bottom of the dip is at about 10**-2.95
    log_lr = np.linspace(-7.0, -1.0, 500)
    clean = 5 - 2 / (1 + np.exp(-2.5 * (log_lr + 4.5))) + np.exp(3 * (log_lr + 1.8))
    true_minimum = log_lr[np.argmin(clean)]
    for seed in range(5):
        noisy = clean + np.random.default_rng(seed).normal(0.0, 0.05, log_lr.size)
        result = lr_finder.analyse(10**log_lr, noisy)
        assert len(result.minima) == 1, seed
        assert math.log10(result.minima[0].lr) == pytest.approx(true_minimum, abs=0.35)
        assert math.log10(result.steepest_lr) == pytest.approx(-4.5, abs=0.5)


def test_several_minima_and_min_log_sep() -> None:
    # cos with a 2-decade period has minima at -5, -3, -1; a small tilt makes the left ones lower
    losses = np.cos(np.pi * (LOG_LR + 6.0)) + 0.1 * LOG_LR
    result = lr_finder.analyse(LRS, losses, smooth_frac=0.01)
    positions = [math.log10(m.lr) for m in result.minima]
    assert positions == pytest.approx([-5.0, -3.0, -1.0], abs=0.05)

    merged = lr_finder.analyse(LRS, losses, smooth_frac=0.01, min_log_sep=2.5)
    assert [math.log10(m.lr) for m in merged.minima] == pytest.approx([-5.0, -1.0], abs=0.05)


def test_no_minimum_steepest_descent_and_absolute_minimum() -> None:
    losses = -np.tanh(2.0 * (LOG_LR + 3.5))  # falls fastest at 10**-3.5, never rises
    result = lr_finder.analyse(LRS, losses)
    assert result.minima == []
    assert math.log10(result.steepest_lr) == pytest.approx(-3.5, abs=0.05)
    assert math.log10(result.absolute_min_lr) > -0.15  # the last points (less the half window left out)
    assert "no local minimum" in lr_finder.format_report(result)


def test_diverged_tail_is_dropped_and_order_does_not_matter() -> None:
    losses = (LOG_LR + 2.0) ** 2
    losses[-20:] = np.nan
    shuffled = np.random.default_rng(1).permutation(LOG_LR.size)
    result = lr_finder.analyse(LRS[shuffled], losses[shuffled], smooth_frac=0.0)
    assert result.dropped_points == 20
    assert math.log10(result.minima[0].lr) == pytest.approx(-2.0, abs=0.02)


def _write(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def test_files_round_trip(tmp_path: Path) -> None:
    path = _write(tmp_path / "adamw.npz", learning_rates=LRS, losses=(LOG_LR + 3.0) ** 2)
    result = lr_finder.analyse_file(path)
    assert result.label == "adamw"
    assert math.log10(result.minima[0].lr) == pytest.approx(-3.0, abs=0.05)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (dict(learning_rates=LRS), "missing array.*losses"),
        (dict(learning_rates=LRS, losses=LRS[:-1]), "400 values but losses has 399"),
        (dict(learning_rates=LRS - 1e-3, losses=LRS), "positive"),
    ],
)
def test_file_errors_name_the_problem(tmp_path: Path, arrays: dict, message: str) -> None:
    path = _write(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserError, match=message):
        lr_finder.analyse_file(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        lr_finder.analyse_file(tmp_path / "nope.npz")


def test_moving_average_keeps_positions() -> None:
    values = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    assert lr_finder.moving_average(values, 3) == pytest.approx(values)  # linear data is unchanged
    assert lr_finder.moving_average(np.array([0.0, 3.0, 0.0]), 3) == pytest.approx([0.0, 1.0, 0.0])


# -- CLI: orch lr finder -----------------------------------------------------------------------------
from orchestrator.cli import main  # noqa: E402


def test_cli_compares_files_on_one_plot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    adamw = _write(tmp_path / "adamw.npz", learning_rates=LRS, losses=(LOG_LR + 3.0) ** 2)
    muon = _write(tmp_path / "muon.npz", learning_rates=LRS, losses=(LOG_LR + 2.0) ** 2)
    plot = tmp_path / "finder.png"
    assert main(["lr", "finder", str(adamw), str(muon), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "adamw:" in out and "muon:" in out
    assert "suggested lr 1.000e-04" in out and "suggested lr 1.000e-03" in out
    assert plot.stat().st_size > 1000


def test_cli_missing_file_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["lr", "finder", str(tmp_path / "gone.npz")]) == 2
    assert "no such file" in capsys.readouterr().err
