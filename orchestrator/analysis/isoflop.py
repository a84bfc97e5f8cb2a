"""Hoffmann et al. (2022) "Approach 2": IsoFLOP profiles, beside the parametric fit as a cross-check.

Points that share a compute budget C = 6 N D (within `tolerance`, relative) form a profile; a parabola
of loss over log N through a profile's points gives that budget's loss-optimal N_opt(C) (its vertex).
Power laws through the optima, N_opt = k C^a and D_opt = C / (6 N_opt), give the exponents a and 1 - a,
to compare with Approach 3's beta / (alpha + beta) and alpha / (alpha + beta).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_SIZES_PER_PROFILE = 3


@dataclass(frozen=True)
class Profile:
    flops: float
    params_opt: float
    tokens_opt: float
    points: int


@dataclass(frozen=True)
class IsoFlopFit:
    profiles: list[Profile]
    params_exponent: float
    """a in N_opt ~ C^a."""
    tokens_exponent: float
    """1 - a in D_opt ~ C^(1-a)."""
    skipped: list[str]
    """Budgets that could not give an optimum, and why."""


def group_by_budget(params: np.ndarray, tokens: np.ndarray, tolerance: float) -> list[np.ndarray]:
    """Indices of points per compute budget: consecutive budgets (sorted) within `tolerance` of a group's first."""
    flops = 6.0 * params * tokens
    order = np.argsort(flops, kind="stable")
    groups: list[list[int]] = []
    for index in order:
        if groups and flops[index] <= flops[groups[-1][0]] * (1 + tolerance):
            groups[-1].append(int(index))
        else:
            groups.append([int(index)])
    return [np.array(group) for group in groups]


def fit_isoflop(params: np.ndarray, tokens: np.ndarray, loss: np.ndarray, tolerance: float = 0.05) -> IsoFlopFit | None:
    """None when fewer than two budgets have a profile of MIN_SIZES_PER_PROFILE model sizes."""
    params, tokens, loss = (np.asarray(v, dtype=float) for v in (params, tokens, loss))
    profiles, skipped = [], []
    for group in group_by_budget(params, tokens, tolerance):
        flops = float(np.exp(np.mean(np.log(6.0 * params[group] * tokens[group]))))
        if len(np.unique(params[group])) < MIN_SIZES_PER_PROFILE:
            continue  # not an IsoFLOP profile, just points that happen to share a budget
        x = np.log(params[group])
        curvature, slope, _ = np.polyfit(x, loss[group], 2)
        if curvature <= 0:
            skipped.append(f"C={flops:.3g}: the losses do not curve upwards around a minimum")
            continue
        vertex = -slope / (2 * curvature)
        if not x.min() <= vertex <= x.max():
            skipped.append(f"C={flops:.3g}: the minimum lies outside the model sizes tried")
            continue
        params_opt = float(np.exp(vertex))
        profiles.append(Profile(flops, params_opt, flops / (6.0 * params_opt), len(group)))
    if len(profiles) < 2:
        return None
    exponent, _ = np.polyfit(np.log([p.flops for p in profiles]), np.log([p.params_opt for p in profiles]), 1)
    return IsoFlopFit(profiles, float(exponent), float(1.0 - exponent), skipped)
