"""Fitting a schedule-aware loss law (`loss_laws`) to observed loss curves, and its bootstrap intervals.

The objective is the MPL authors' (thu-yao-01-luo/MultiPowerLaw @8da9f19 `src/models.py`, `src/utils.py`): the
sum over observed points of the Huber loss (delta = 1e-3) of log(observed) - log(predicted).

MPL is fitted as its authors fit it (`src/fitting.py`, `src/config.py`): a start for L0, A, alpha, B from a
5 x 3 x 3 x 3 grid around a log-log line, each point refined by L-BFGS-B on the simplified law
L0 + A S1^-alpha - B (peak - eta_t); then C = 1, beta = 0.5, gamma = 0.5; then at most 200 steps of torch's
AdamW (its defaults: betas 0.9, 0.999, eps 1e-8, weight decay 0.01) at LR 5e-2 for L0, A, B, C and 5e-3 for the
exponents, stopping after 20 steps without improvement or at a gradient norm below 1e-5, keeping the parameters
of the best step. Run to convergence instead (L-BFGS-B), the fit reaches a 7x lower training objective on the
authors' 400M curves and predicts their held-out schedules worse (mean relative error 0.22 % against 0.17 %):
the short AdamW run is part of what the paper's numbers measure, so it is what `orch predict` does.
Tissue et al.'s law (4 parameters) is fitted by L-BFGS-B from the same grid's L0, A, alpha and a least-squares C.

Intervals: `bootstrap` refits on observed points (or whole curves) drawn with replacement, each by the same
procedure, and the 2.5 and 97.5 percentiles of each prediction over them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

import numpy as np
from scipy.optimize import minimize
from scipy.stats import linregress

from orchestrator.analysis.loss_laws import LAWS, Curve

HUBER_DELTA = 1e-3
DEFAULT_LAW = "mpl"
MAX_ITERATIONS = 500
# MultiPowerLaw's src/config.py (FIT_*) and torch.optim.AdamW's default weight decay
ADAMW_STEPS = 200
ADAMW_LR_LINEAR = 5e-2
ADAMW_LR_EXPONENT = 5e-3
ADAMW_WEIGHT_DECAY = 1e-2
ADAMW_PATIENCE = 20
ADAMW_GRAD_NORM = 1e-5


@dataclass
class LawFit:
    law: str
    params: dict[str, float]
    objective: float
    n_points: int
    n_curves: int
    bootstrap: list[np.ndarray] = field(default_factory=list)

    @property
    def vector(self) -> np.ndarray:
        return np.array(list(self.params.values()))


def _huber(residual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Huber loss, its derivative) elementwise."""
    small = np.abs(residual) <= HUBER_DELTA
    value = np.where(small, 0.5 * residual ** 2, HUBER_DELTA * (np.abs(residual) - 0.5 * HUBER_DELTA))
    return value, np.where(small, residual, HUBER_DELTA * np.sign(residual))


def objective(params: np.ndarray, law: str, curves: list[Curve], weights: list[np.ndarray] | None = None):
    """(sum of weighted Huber losses of the log residuals, gradient)."""
    function = LAWS[law][0]
    total, grad = 0.0, np.zeros(len(params))
    for index, curve in enumerate(curves):
        prediction, jacobian = function(params, curve, gradient=True)
        if np.any(prediction <= 0) or not np.all(np.isfinite(prediction)):
            return 1e30, np.zeros(len(params))
        value, slope = _huber(np.log(curve.loss) - np.log(prediction))
        weight = weights[index] if weights is not None else 1.0
        total += float(np.sum(weight * value))
        grad -= (weight * slope / prediction) @ jacobian
    return total, grad


def _grid_start(curves: list[Curve]) -> np.ndarray:
    """The authors' start for L0, A, alpha, B: a grid around a log-log line, each refined by L-BFGS-B on the
    simplified law L0 + A S1^-alpha - B (peak - eta_t)."""
    floor = min(float(curve.loss.min()) for curve in curves)
    log_x = np.concatenate([np.log(curve.s1) for curve in curves])
    log_y = np.concatenate([np.log(curve.loss - floor + 0.01) for curve in curves])
    slope, intercept = linregress(log_x, log_y)[:2]
    peak = max(float(curve.lrs.max()) for curve in curves)
    parts = [(curve.s1, peak - curve.lrs[curve.index], np.log(curve.loss)) for curve in curves]

    def simplified(params: np.ndarray) -> float:
        L0, A, alpha, B = params
        total = 0.0
        for s1, below_peak, log_loss in parts:
            with np.errstate(over="ignore", invalid="ignore"):  # a trial step far out: refused just below
                prediction = L0 + A * s1 ** -alpha - B * below_peak
            if not np.all(prediction > 0):
                return 1e30
            total += float(np.sum(_huber(log_loss - np.log(prediction))[0]))
        return total

    grid = product(np.linspace(floor - 0.2, floor + 0.2, 5), np.linspace(np.exp(intercept) - 0.1, np.exp(intercept) + 0.1, 3),
                   np.linspace(-slope - 0.1, -slope + 0.1, 3), np.linspace(100, 1000, 3))
    best = None
    for start in grid:
        result = minimize(simplified, np.array(start), method="L-BFGS-B", bounds=[(0, None)] * 4)
        if best is None or result.fun < best.fun:
            best = result
    return best.x


def _refine(law: str, start: np.ndarray, curves: list[Curve], weights: list[np.ndarray] | None = None) -> tuple[np.ndarray, float]:
    # Scaled so a typical point's term is about 1 (residuals of about delta): L-BFGS-B's tolerances are relative
    # to max(|f|, 1), and the raw sum is about 1e-4.
    scale = 1.0 / (HUBER_DELTA ** 2 * sum(len(curve.steps) for curve in curves))

    def scaled(params: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = objective(params, law, curves, weights)
        return value * scale, grad * scale

    result = minimize(scaled, start, jac=True, method="L-BFGS-B", bounds=[(0, None)] * len(start),
                      options={"maxiter": MAX_ITERATIONS, "ftol": 1e-10, "gtol": 1e-8})
    return result.x, float(result.fun) / scale


def _authors_adamw(start: np.ndarray, curves: list[Curve], weights: list[np.ndarray] | None = None) -> tuple[np.ndarray, float]:
    """MultiPowerLaw's `mpl_adam_fit` (src/fitting.py @8da9f19) step for step, with torch's AdamW update rule."""
    params = start.astype(np.float64).copy()
    rates = np.array([ADAMW_LR_LINEAR, ADAMW_LR_LINEAR, ADAMW_LR_EXPONENT, ADAMW_LR_LINEAR, ADAMW_LR_LINEAR,
                      ADAMW_LR_EXPONENT, ADAMW_LR_EXPONENT])  # L0, A, alpha, B, C, beta, gamma
    first, second = np.zeros_like(params), np.zeros_like(params)
    best, best_params, lowest, stale = np.inf, params.copy(), np.inf, 0
    for step in range(ADAMW_STEPS):
        value, grad = objective(params, "mpl", curves, weights)
        count = step + 1  # torch.optim.AdamW: decoupled decay, then the bias-corrected Adam step
        params = params * (1.0 - rates * ADAMW_WEIGHT_DECAY)
        first = 0.9 * first + 0.1 * grad
        second = 0.999 * second + 0.001 * grad * grad
        denominator = np.sqrt(second) / np.sqrt(1.0 - 0.999 ** count) + 1e-8
        params = params - (rates / (1.0 - 0.9 ** count)) * first / denominator
        if value < lowest:
            lowest, stale = value, 0
        else:
            stale += 1
        if step > ADAMW_PATIENCE and stale >= ADAMW_PATIENCE:
            break
        if np.linalg.norm(grad) < ADAMW_GRAD_NORM:
            break
        if value < best:  # as the authors record it: this step's loss with the parameters after its update
            best, best_params = value, params.copy()
    return best_params, best


def _fit(law: str, start: np.ndarray, curves: list[Curve], weights: list[np.ndarray] | None = None) -> tuple[np.ndarray, float]:
    return _authors_adamw(start, curves, weights) if law == "mpl" else _refine(law, start, curves, weights)


def fit_law(curves: list[Curve], law: str = DEFAULT_LAW, bootstrap: int = 0, resample: str = "points",
            seed: int = 0) -> LawFit:
    """Fit `law` to the observed curves (each with `loss`); `bootstrap` resampled refits for intervals."""
    names = LAWS[law][1]
    L0, A, alpha, B = _grid_start(curves)
    if law == "mpl":
        start = np.array([L0, A, alpha, B, 1.0, 0.5, 0.5])
    else:
        s2 = np.concatenate([curve.s2() for curve in curves])
        rest = np.concatenate([curve.loss - L0 - A * curve.s1 ** -alpha for curve in curves])
        start = np.array([L0, A, alpha, max(0.0, float(-(s2 @ rest) / (s2 @ s2))) if s2 @ s2 > 0 else 0.0])
    params, value = _fit(law, start, curves)
    fitted = LawFit(law, dict(zip(names, map(float, params))), value, sum(len(c.steps) for c in curves), len(curves))
    rng = np.random.default_rng(seed)
    sizes = [len(curve.steps) for curve in curves]
    for _ in range(bootstrap):
        if resample == "curves":  # whole curves drawn with replacement: a curve's weight is how often
            drawn = np.bincount(rng.integers(0, len(curves), len(curves)), minlength=len(curves))
            weights = [np.full(size, float(times)) for size, times in zip(sizes, drawn)]
        else:  # points drawn with replacement over all curves
            counts = np.bincount(rng.integers(0, sum(sizes), sum(sizes)), minlength=sum(sizes)).astype(float)
            weights = np.split(counts, np.cumsum(sizes)[:-1])
        fitted.bootstrap.append(_fit(law, start, curves, weights)[0])
    return fitted


def predict(fitted: LawFit, curve: Curve) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(prediction, 2.5 %, 97.5 %) at the curve's steps; no interval without bootstrap refits."""
    function = LAWS[fitted.law][0]
    prediction = function(fitted.vector, curve)
    if not fitted.bootstrap:
        return prediction, None, None
    draws = np.array([function(params, curve) for params in fitted.bootstrap])
    return prediction, np.percentile(draws, 2.5, axis=0), np.percentile(draws, 97.5, axis=0)

