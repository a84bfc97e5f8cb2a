"""Schedule-aware loss laws: the training loss at step t of any learning-rate schedule, and its gradient.

A schedule is the LR of every optimizer step, `lrs[i]` being the LR of step `first + i`; the loss observed at
step t is after step t's update. S1(t) = sum of the LRs of steps first..t (the "forward area", warmup included).

Multi-Power Law (Luo et al. 2025, "A Multi-Power Law for Loss Curve Prediction Across Learning Rate
Schedules", arXiv 2503.12811; thu-yao-01-luo/MultiPowerLaw @8da9f19, `src/models.py: MPL.forward`):

    L(t) = L0 + A * S1(t)^-alpha + B * LD(t)
    LD(t) = sum_{k=first+1..t} (eta_k - eta_{k-1}) * (1 - (1 + C * eta_k^-gamma * S_k(t))^-beta),
    S_k(t) = sum_{tau=k..t} eta_tau

(a decrease of the LR, eta_k < eta_{k-1}, lowers the loss by up to B * (eta_{k-1} - eta_k), more of it the
longer training goes on after it; the warmup's increases count too, as in the authors' code).

Tissue et al. 2024 ("Scaling Law with Learning Rate Annealing", arXiv 2408.11029, eq. 1):

    L(t) = L0 + A * S1(t)^-alpha - C * S2(t),   S2(t) = sum_{i<=t} m_i,  m_i = lam * m_{i-1} + (eta_{i-1} - eta_i)

with the momentum decay lam = 0.999 the paper recommends. Both laws are invariant to the LR's scale up to their
constants (A, B, C absorb it), so LRs are used as given.

Everything here is numpy; `Curve` holds what a law needs of one schedule at its observed or requested steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MPL_PARAMETERS = ("L0", "A", "alpha", "B", "C", "beta", "gamma")
TISSUE_PARAMETERS = ("L0", "A", "alpha", "C")
TISSUE_LAMBDA = 0.999
_HUGE = 1e150  # stands in for 0^-gamma: C * _HUGE * S stays finite, and (1 + x)^-beta is 0
_BLOCK_ELEMENTS = 1 << 21  # rows of the (steps x LR changes) matrix are processed in blocks of about this size


@dataclass
class Curve:
    """One LR schedule and the steps a law is evaluated at (sorted, within the schedule)."""

    name: str
    first: int
    lrs: np.ndarray
    steps: np.ndarray
    loss: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.lrs = np.asarray(self.lrs, dtype=np.float64)
        self.steps = np.asarray(self.steps, dtype=np.int64)
        self.cumulative = np.cumsum(self.lrs)
        self.index = self.steps - self.first
        self.s1 = self.cumulative[self.index]

    # -- MPL's loss-drop term: the (observed step x LR change) matrix, blocked ---------------------------------
    def changes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(index k, eta_k - eta_{k-1}, eta_k) for every step whose LR differs from the step before."""
        if "changes" not in self._cache:
            gap = np.diff(self.lrs)
            k = np.flatnonzero(gap) + 1
            self._cache["changes"] = (k, gap[k - 1], self.lrs[k])
        return self._cache["changes"]

    def blocks(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(rows, S_k(t) for those rows' steps t and every LR change k, 0 where k > t), in blocks of rows;
        built once per curve. A 0 makes that change's term vanish: G(0) = 0."""
        if "blocks" not in self._cache:
            k, _gap, _eta = self.changes()
            built = []
            rows_per_block = max(1, _BLOCK_ELEMENTS // max(1, len(k)))
            for start in range(0, len(self.index), rows_per_block):
                rows = np.arange(start, min(start + rows_per_block, len(self.index)))
                t = self.index[rows]
                since = self.cumulative[t][:, None] - self.cumulative[k - 1][None, :]
                built.append((rows, np.where(k[None, :] <= t[:, None], since, 0.0)))
            self._cache["blocks"] = built
        return self._cache["blocks"]

    def s2(self, lam: float = TISSUE_LAMBDA) -> np.ndarray:
        """Tissue et al.'s annealing area S2 at the curve's steps."""
        key = ("s2", lam)
        if key not in self._cache:
            drops = np.concatenate([[0.0], -np.diff(self.lrs)])  # eta_{i-1} - eta_i
            momentum = np.empty_like(drops)
            running = 0.0
            for i, drop in enumerate(drops):  # a linear recurrence: exact, and fast enough at 10^5 steps
                running = lam * running + drop
                momentum[i] = running
            self._cache[key] = np.cumsum(momentum)[self.index]
        return self._cache[key]


def mpl(params: np.ndarray, curve: Curve, gradient: bool = False):
    """MPL's prediction at the curve's steps; with `gradient`, also d prediction / d params (steps x 7)."""
    L0, A, alpha, B, C, beta, gamma = params
    s1_power = curve.s1 ** -alpha
    _k, gap, eta = curve.changes()
    positive = eta > 0
    # An LR of 0 makes eta^-gamma infinite: that drop is fully realised (G = 1) as soon as any LR follows it.
    scale = np.where(positive, np.abs(eta) ** -gamma, _HUGE)
    log_eta = np.where(positive, np.log(np.where(positive, eta, 1.0)), 0.0)
    size = len(curve.index)
    drop, d_c, d_beta, d_gamma = (np.zeros(size) for _ in range(4))
    for rows, since in curve.blocks():
        x = (C * scale)[None, :] * since
        log_u = np.log1p(x)
        p = np.exp(-beta * log_u)  # (1 + x)^-beta
        drop[rows] = (1.0 - p) @ gap
        if gradient:
            w = beta * p * x / (1.0 + x)  # = -x dG/dx ... times the chain factors below
            d_c[rows] = (w @ gap) / C if C > 0 else (beta * scale[None, :] * since * p) @ gap
            d_beta[rows] = (p * log_u) @ gap
            d_gamma[rows] = (w * -log_eta[None, :]) @ gap
    prediction = L0 + A * s1_power + B * drop
    if not gradient:
        return prediction
    jacobian = np.stack([np.ones(size), s1_power, -A * s1_power * np.log(curve.s1), drop,
                         B * d_c, B * d_beta, B * d_gamma], axis=1)
    return prediction, jacobian


def tissue(params: np.ndarray, curve: Curve, gradient: bool = False, lam: float = TISSUE_LAMBDA):
    """Tissue et al.'s prediction at the curve's steps; with `gradient`, also the Jacobian (steps x 4)."""
    L0, A, alpha, C = params
    s1_power = curve.s1 ** -alpha
    s2 = curve.s2(lam)
    prediction = L0 + A * s1_power - C * s2
    if not gradient:
        return prediction
    jacobian = np.stack([np.ones_like(prediction), s1_power, -A * s1_power * np.log(curve.s1), -s2], axis=1)
    return prediction, jacobian


LAWS = {"mpl": (mpl, MPL_PARAMETERS), "tissue": (tissue, TISSUE_PARAMETERS)}
