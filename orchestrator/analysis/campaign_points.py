"""Scaling-law points straight from a campaign: what `orch fit CONFIG` fits.

One point per run end by default: each run's last evaluated checkpoint (a pretrain run's last
checkpoint, each cooldown's end), which is how a WSD campaign yields a (N, D, L) point per cooldown at
a fraction of the cost of separate cosine runs (Hägele et al. 2024). A run end whose learning rate is
still above half its peak there (a WSD pretrain held constant, never cooled) is left out unless
`keep_unannealed`: such checkpoints lie above the law (Hägele et al.'s figures; on the quickstart the
un-cooled pretrain ends sit 2.5-7% above the law fitted to the annealed ends). The schedule is read
with `orch lr check`'s code from the jobs' Megatron-named keys. `which="all"` takes every evaluated
checkpoint instead. Runs that stopped before their `TRAIN_ITERS`, or whose loss is not finite
or ended above where it started (diverged), are left out and listed. Where several runs share a model
size and token count (a learning-rate sweep), the lowest loss is kept: the law describes the best a
model of that size reaches with that data, not an untuned one.

N comes from a job parameter (`params_key`, e.g. `N_PARAMS`, which a config can compute from its
architecture keys with `expr(model_params(...))`), else from the evaluator's `parameters` result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.analysis.points import Points
from orchestrator.campaign.results import ResultKeys, Run, default_loss_column, group_runs, run_rows
from orchestrator.errors import UserError
from orchestrator.jobs import Job
from orchestrator.planning.lr_check import schedule_from_params

DEFAULT_PARAMS_KEYS = ("N_PARAMS",)
PARAMS_RESULT = "eval/parameters"
ANNEALED_BELOW = 0.5  # a run end counts as annealed when its LR is at most this fraction of the peak
NOT_ANNEALED = "not annealed"


def unannealed(run_name: str, params: dict[str, Any], iteration: int) -> str | None:
    """Why a checkpoint is not annealed (its LR near the peak), or None (annealed, or no schedule known)."""
    try:
        schedule = schedule_from_params(run_name, params)
    except (UserError, ValueError, TypeError):
        return None
    if schedule is None:
        return None
    peak = schedule.lr_at(math.ceil(schedule.warmup_end))
    here = schedule.lr_at(iteration)
    if peak > 0 and here > ANNEALED_BELOW * peak:
        return f"its LR at iteration {iteration} is {here:.3g}, {here / peak:.0%} of the peak: {NOT_ANNEALED}"
    return None


def points_kind(which: str, keep_unannealed: bool) -> str:
    """What the fit's points are, in words (for a campaign and for a results CSV alike)."""
    if which == "all":
        return "every evaluated checkpoint"
    return ("one per finished run end, annealed or not (--keep-unannealed)" if keep_unannealed
            else "one per finished, annealed run end")


@dataclass
class CampaignPoints:
    points: Points
    labels: list[str]
    """Which run and iteration each point is."""
    left_out: list[str] = field(default_factory=list)
    params_source: str = ""
    merged: int = 0
    """Points dropped because a run with the same size and tokens reached a lower loss."""
    which: str = "ends"
    loss_col: str = ""
    keep_unannealed: bool = False

    def describe(self) -> list[str]:
        """Lines saying where the points came from and what was left out (one line for all un-annealed ends)."""
        lines = [f"points: {points_kind(self.which, self.keep_unannealed)}, L from {self.loss_col}, N from {self.params_source}"
                 + (f"; {self.merged} dropped for a lower loss at the same size and tokens" if self.merged else "")]
        unannealed = [reason for reason in self.left_out if reason.endswith(NOT_ANNEALED)]
        lines += [f"left out: {reason}" for reason in self.left_out if reason not in unannealed]
        if unannealed:  # a WSD campaign has one per pretrain run
            lines.append(f"left out {len(unannealed)} run ends not annealed (LR above half its peak), e.g. "
                         f"{unannealed[0]}; --keep-unannealed keeps them")
        return lines


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


END, END_NOT_ANNEALED, CHECKPOINT = "end", "end (not annealed)", "checkpoint"
"""A row's role in a fit (the results CSV's `fit` column): a finished run's last checkpoint, annealed or not,
or one of its earlier checkpoints; rows of runs left out say why ("left out: ...")."""
FIT_COLUMN = "fit"


@dataclass
class RunVerdict:
    """One run as the fit sees it: its rows with tokens, their losses, and why it is left out, if it is."""

    run: Run
    rows: list[dict[str, Any]]
    losses: list[float | None]
    left_out: str = ""
    not_annealed: str = ""
    """Why its end is not annealed ("" if it is, or if no schedule is known)."""

    def role(self, index: int) -> str:
        if self.left_out:
            return f"left out: {self.left_out}"
        if index < len(self.rows) - 1:
            return CHECKPOINT
        return END_NOT_ANNEALED if self.not_annealed else END


def judge_runs(jobs: Sequence[Job], keys: ResultKeys = ResultKeys(), loss_col: str | None = None,
               rows_by_run: Mapping[str, Sequence[dict[str, Any]]] | None = None) -> tuple[list[RunVerdict], str]:
    """Every run of the campaign judged for a fit, and the loss column used. `rows_by_run` ({run folder: its
    rows}, as `campaign.results.collect_results` read them) saves reading every run's logs again."""
    runs = sorted(group_runs(jobs, keys.run_dir), key=lambda r: str(r.run_dir))
    read = (lambda run: rows_by_run.get(str(run.run_dir), ())) if rows_by_run is not None else \
        (lambda run: run_rows(run, keys))
    rows_of = {run.run_dir: [row for row in read(run) if row.get("tokens")] for run in runs}
    loss_col = loss_col or default_loss_column([row for rows in rows_of.values() for row in rows])
    verdicts = []
    for run in runs:
        rows = rows_of[run.run_dir]
        losses = [_number(row.get(loss_col)) for row in rows]
        verdict = RunVerdict(run, rows, losses)
        verdict.left_out = _left_out(rows, losses, loss_col, _number(run.params.get("TRAIN_ITERS")))
        if not verdict.left_out:
            verdict.not_annealed = unannealed(str(run.run_dir), run.params, rows[-1]["iteration"]) or ""
        verdicts.append(verdict)
    return verdicts, loss_col


def _left_out(rows: list[dict[str, Any]], losses: list[float | None], loss_col: str, target: float | None) -> str:
    if not rows:
        return "no evaluated checkpoint"
    last = rows[-1]
    if losses[-1] is None:
        return f"{loss_col} at iteration {last['iteration']} is {last.get(loss_col)!r}"
    if target is not None and last["iteration"] < target:
        return f"stopped at iteration {last['iteration']} of {int(target)}"
    first = next(value for value in losses if value is not None)
    if losses[-1] > first and len(rows) > 1:
        return f"{loss_col} rose from {first:.4g} to {losses[-1]:.4g} (diverged)"
    return ""


def keeps(role: str, which: str, keep_unannealed: bool) -> bool:
    """Does a point of this role enter the fit? The one rule for `orch fit CONFIG` and `orch fit CSV`."""
    if which == "all":
        return role in (END, END_NOT_ANNEALED, CHECKPOINT)
    return role == END or (keep_unannealed and role == END_NOT_ANNEALED)


Candidate = tuple[float, float, float, Any]
"""(N, D, L, what the point is: a label or a CSV line)."""


def lowest_per_size_and_tokens(candidates: list[Candidate]) -> tuple[list[Candidate], int]:
    """The lowest loss per (N, D) (a learning-rate sweep keeps its best run), and how many were dropped."""
    best: dict[tuple[float, float], Candidate] = {}
    for candidate in candidates:
        slot = (candidate[0], candidate[1])
        if slot not in best or candidate[2] < best[slot][2]:
            best[slot] = candidate
    return list(best.values()), len(candidates) - len(best)


def campaign_points(jobs: Sequence[Job], keys: ResultKeys = ResultKeys(), params_key: str | None = None,
                    loss_col: str | None = None, which: str = "ends", best_of_sweep: bool = True,
                    keep_unannealed: bool = False) -> CampaignPoints:
    runs = group_runs(jobs, keys.run_dir)
    key = params_key or next((k for k in DEFAULT_PARAMS_KEYS if any(k in run.params for run in runs)), None)
    if params_key and not any(params_key in run.params for run in runs):
        raise UserError(f"--params-key {params_key}: no job has that parameter")
    verdicts, loss_col = judge_runs(jobs, keys, loss_col)
    candidates: list[Candidate] = []
    left_out: list[str] = []
    for verdict in verdicts:
        run = verdict.run
        if verdict.left_out:
            left_out.append(f"{run.run_dir}: {verdict.left_out}")
            continue
        if which == "ends" and verdict.not_annealed and not keep_unannealed:
            left_out.append(f"{run.run_dir}: {verdict.not_annealed}")
            continue
        for index, (row, loss) in enumerate(zip(verdict.rows, verdict.losses)):
            if not keeps(verdict.role(index), which, keep_unannealed):
                continue
            params = _number(run.params.get(key)) if key else _number(row.get(PARAMS_RESULT))
            if params is None:
                raise UserError(f"{run.run_dir}: no parameter count: give the jobs an N_PARAMS key (e.g. "
                                f"expr(model_params(...)) from the architecture keys), name one with --params-key, "
                                f"or have the evaluator report '{PARAMS_RESULT}'")
            if loss is not None:
                candidates.append((params, float(row["tokens"]), loss, f"{run.run_dir}@{row['iteration']}"))
    merged = 0
    if best_of_sweep:
        candidates, merged = lowest_per_size_and_tokens(candidates)
    candidates.sort()
    points = Points([c[0] for c in candidates], [c[1] for c in candidates], [c[2] for c in candidates],
                    lines=list(range(1, len(candidates) + 1)), skipped=0)
    source = f"job parameter {key}" if key else f"the evaluator's '{PARAMS_RESULT}' result"
    return CampaignPoints(points, [c[3] for c in candidates], left_out, source, merged, which, loss_col,
                          keep_unannealed)
