"""The scaling-law fit (Hoffmann et al. 2022, Approach 3 and 2) on data generated from known laws."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from orchestrator.analysis.isoflop import fit_isoflop
from orchestrator.analysis.scaling_law import FitError, LawParameters, _objective, fit_law

CHINCHILLA = LawParameters(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # Hoffmann et al.'s own fit
LAWS = [
    CHINCHILLA,
    LawParameters(E=2.1, A=80.0, B=3000.0, alpha=0.25, beta=0.40),
    LawParameters(E=1.2, A=1500.0, B=150.0, alpha=0.45, beta=0.22),
]


def grid_design(law: LawParameters, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every model size trained to every token count (a campaign of pretrain checkpoints and cooldowns)."""
    params = np.repeat(np.logspace(7, 9.5, 6), 8)
    tokens = np.tile(np.logspace(9, 11.5, 8), 6)
    return params, tokens, law.loss(params, tokens) * np.exp(np.random.default_rng(seed).normal(0, noise, params.size))


def isoflop_design(law: LawParameters, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model sizes around the optimum of each of four budgets (Hoffmann et al.'s Approach 2 layout)."""
    params, tokens = [], []
    for budget in (1e18, 1e19, 1e20, 1e21):
        centre = law.optimal(budget)[0]
        for size in centre * np.logspace(-1, 1, 9):
            params.append(size)
            tokens.append(budget / (6 * size))
    params, tokens = np.array(params), np.array(tokens)
    return params, tokens, law.loss(params, tokens) * np.exp(np.random.default_rng(seed).normal(0, noise, params.size))


@pytest.mark.parametrize("design", [grid_design, isoflop_design])
@pytest.mark.parametrize("law", LAWS, ids=["chinchilla", "data-hungry", "param-hungry"])
def test_known_laws_are_recovered(law: LawParameters, design) -> None:
    params, tokens, loss = design(law, noise=0.002, seed=7)
    fit = fit_law(params, tokens, loss, bootstrap=60, seed=1)
    assert fit.converged
    assert fit.law.alpha == pytest.approx(law.alpha, abs=0.03)
    assert fit.law.beta == pytest.approx(law.beta, abs=0.03)
    assert fit.law.E == pytest.approx(law.E, rel=0.03)
    # What the law is for: the compute-optimal split at a budget beyond the data.
    true_n, true_d, true_loss = law.optimal(1e22)
    n, d, predicted = fit.law.optimal(1e22)
    assert n == pytest.approx(true_n, rel=0.25) and d == pytest.approx(true_d, rel=0.25)
    assert predicted == pytest.approx(true_loss, rel=0.01)
    for name in ("E", "alpha", "beta"):
        low, high = fit.intervals[name]
        assert low <= getattr(fit.law, name) <= high


def test_without_noise_the_fit_is_exact() -> None:
    params, tokens, loss = grid_design(CHINCHILLA, noise=0.0, seed=0)
    fit = fit_law(params, tokens, loss)
    for name, value in CHINCHILLA.as_dict().items():
        assert getattr(fit.law, name) == pytest.approx(value, rel=2e-3), name
    assert np.max(np.abs(fit.residuals)) < 1e-5


def test_the_optimum_formula_matches_a_brute_force_search() -> None:
    for law in LAWS:
        for budget in (1e19, 1e21, 1e23):
            n, d, loss = law.optimal(budget)
            assert 6 * n * d == pytest.approx(budget, rel=1e-9)
            sizes = n * np.logspace(-2, 2, 400_001)
            brute = law.loss(sizes, budget / (6 * sizes))
            best = sizes[np.argmin(brute)]
            assert best == pytest.approx(n, rel=1e-4) and brute.min() == pytest.approx(loss, rel=1e-12)


def test_the_gradient_is_the_objectives_derivative() -> None:
    params, tokens, loss = grid_design(CHINCHILLA, noise=0.01, seed=3)
    data = (np.log(params), np.log(tokens), np.log(loss))
    theta = np.array([6.0, 6.0, 0.5, 0.3, 0.3])
    _, gradient = _objective(theta, *data)
    for index in range(5):
        step = np.zeros(5)
        step[index] = 1e-6
        numeric = (_objective(theta + step, *data)[0] - _objective(theta - step, *data)[0]) / 2e-6
        assert gradient[index] == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_the_best_grid_starts_reach_the_optimum_of_many_more() -> None:
    params, tokens, loss = grid_design(LAWS[1], noise=0.01, seed=11)
    default, wider = fit_law(params, tokens, loss), fit_law(params, tokens, loss, starts=400)
    assert default.objective == pytest.approx(wider.objective, rel=1e-6)


def test_bootstrap_is_reproducible_with_its_seed() -> None:
    params, tokens, loss = grid_design(CHINCHILLA, noise=0.01, seed=5)
    first, second = (fit_law(params, tokens, loss, bootstrap=30, seed=4) for _ in range(2))
    other = fit_law(params, tokens, loss, bootstrap=30, seed=5)
    assert first.intervals == second.intervals and first.intervals != other.intervals


def test_isoflop_profiles_give_the_exponents() -> None:
    for law in LAWS:
        params, tokens, loss = isoflop_design(law, noise=0.001, seed=2)
        isoflop = fit_isoflop(params, tokens, loss)
        assert len(isoflop.profiles) == 4
        assert isoflop.params_exponent == pytest.approx(law.beta / (law.alpha + law.beta), abs=0.02)
    params, tokens, loss = grid_design(CHINCHILLA, noise=0.0, seed=0)
    assert fit_isoflop(params, tokens, loss) is None  # no budget shared by 3 model sizes


@pytest.mark.parametrize("points, message", [
    (([1e8, 2e8, 3e8, 4e8], [1e9, 1e9, 2e9, 2e9], [3.0, 2.9, 2.8, 2.7]), "4 points"),
    (([1e8, 2e8, 3e8, 4e8, 0.0], [1e9] * 3 + [2e9] * 2, [3.0] * 5), "point 5"),
    (([1e8, 2e8, 3e8, 4e8, 5e8], [1e9] * 5, [3.0, 2.9, 2.8, 2.7, 2.6]), "two token counts"),
])
def test_unfittable_points_are_refused(points, message) -> None:
    with pytest.raises(FitError, match=message):
        fit_law(*(np.array(v) for v in points))


# -- the command line ---------------------------------------------------------------------------------


def write_csv(path: Path, params, tokens, loss, extra_rows: list[list[str]] = ()) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "params", "tokens", "val_loss"])
        writer.writerows([f"r{i}", n, d, loss_] for i, (n, d, loss_) in enumerate(zip(params, tokens, loss)))
        writer.writerows(extra_rows)


def orch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_cli_json_has_exactly_the_documented_keys(tmp_path: Path) -> None:
    write_csv(tmp_path / "results.csv", *isoflop_design(CHINCHILLA, 0.003, 1), extra_rows=[["eval-only", "", "", ""]])
    result = orch("fit", "results.csv", "--json", "--bootstrap", "40", "--budget", "1e21", "--budget", "1e22",
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert set(payload) == {"version", "E", "A", "B", "alpha", "beta", "ci", "optimal", "n_points"} and payload["version"] == 1
    assert payload["n_points"] == 36  # the row without values is skipped
    assert set(payload["ci"]) == {"E", "A", "B", "alpha", "beta"} and all(len(v) == 2 for v in payload["ci"].values())
    assert [o["flops"] for o in payload["optimal"]] == [1e21, 1e22]
    assert set(payload["optimal"][0]) == {"flops", "params", "tokens", "loss"}
    law = LawParameters(**{k: payload[k] for k in ("E", "A", "B", "alpha", "beta")})
    assert payload["optimal"][1]["params"] == pytest.approx(law.optimal(1e22)[0], rel=1e-9)


def test_cli_table_and_plot(tmp_path: Path) -> None:
    write_csv(tmp_path / "results.csv", *isoflop_design(CHINCHILLA, 0.003, 1))
    result = orch("fit", "results.csv", "--bootstrap", "20", "--budget", "1e21", "--plot", "fit.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "compute-optimal allocation" in result.stdout and "IsoFLOP (Approach 2) from 4 budgets" in result.stdout
    assert (tmp_path / "fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("case, expected", [
    ("missing column", ["no column 'params'", "--params-col"]),
    ("not a number", ["results.csv:3", "'tokens'", "'many'"]),
    ("negative loss", ["results.csv:2", "positive"]),
    ("too few points", ["3 points", "5 parameters"]),
    ("missing file", ["cannot read", "nope.csv"]),
])
def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, case: str, expected: list[str]) -> None:
    path = tmp_path / "results.csv"
    name = "results.csv"
    if case == "missing column":
        path.write_text("run,N,tokens,val_loss\nr0,1e8,1e9,3.0\n")
    elif case == "not a number":
        path.write_text("params,tokens,val_loss\n1e8,1e9,3.0\n2e8,many,2.9\n")
    elif case == "negative loss":
        path.write_text("params,tokens,val_loss\n1e8,1e9,-3.0\n")
    elif case == "too few points":
        path.write_text("params,tokens,val_loss\n1e8,1e9,3.0\n2e8,1e9,2.9\n2e8,2e9,2.8\n")
    else:
        name = "nope.csv"
    result = orch("fit", name, "--plot", "fit.png", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 2, result.stderr
    for fragment in expected:
        assert fragment in result.stderr
    assert not (tmp_path / "fit.png").exists()


def test_an_unreliable_fit_is_fitted_but_warned_about() -> None:
    from orchestrator.analysis.scaling_law import warn_if_unreliable

    # Loss that does not fall with tokens at all: the B term vanishes and beta means nothing.
    params = np.repeat(np.logspace(7, 9, 4), 3)
    tokens = np.tile(np.logspace(9, 10, 3), 4)
    loss = 1.5 + 300.0 / params**0.3
    fit = fit_law(params, tokens, loss)
    notes = warn_if_unreliable(fit)
    assert any("12 points for 5 parameters" in note for note in notes)
    assert any("does not depend on tokens" in note and "B and beta are not determined" in note for note in notes), notes
    reliable = fit_law(*grid_design(CHINCHILLA, noise=0.002, seed=1))
    assert warn_if_unreliable(reliable) == []
