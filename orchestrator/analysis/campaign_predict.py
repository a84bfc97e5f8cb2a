"""`orch predict CONFIG`: the final training loss of every cooldown branch, predicted by a schedule-aware loss law
(`loss_fit`) from its pretrain run's curve and the branches of the same pretrain run that have finished.

A run is a run folder (`RUN_DIR`) of the campaign; its LR at every step comes from its jobs' Megatron-named keys
(`orch lr check`'s reading, `planning.lr_check`), its observed curve from its training log's `lm loss` lines
(`campaign.training_log`). A cooldown branches from the pretrain run `orch lr check` finds for it. A pretrain
curve held at a constant LR shows no decay, so a law cannot learn the drop a cooldown brings from it alone: a
prediction needs at least one finished branch of that pretrain run (or another decaying curve). A finished branch
is predicted from the others only (left out of its own fit), so its predicted and observed losses are a fair check
of the law on this campaign. Optimizer step s runs at the LR `orch lr schedule` gives after s - 1 iterations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from orchestrator.analysis.loss_curves_io import MIN_OBSERVED
from orchestrator.analysis.loss_fit import LawFit, fit_law, predict
from orchestrator.analysis.loss_laws import Curve
from orchestrator.campaign.results import ResultKeys, group_runs
from orchestrator.campaign.training_log import read_training_losses
from orchestrator.errors import UserError
from orchestrator.jobs import Job
from orchestrator.planning.lr_check import JobSchedule, check_named_params

CURVE_POINTS = 50


@dataclass
class BranchPrediction:
    run: str
    parent: str
    resume_step: int
    final_step: int
    loss: float | None = None
    low: float | None = None
    high: float | None = None
    observed: float | None = None
    fitted_on: list[str] = field(default_factory=list)
    why_not: str = ""
    observed_curve: list[tuple[int, float]] = field(default_factory=list)
    """(step, logged lm loss) of the branch so far."""
    predicted_curve: list[tuple[int, float]] = field(default_factory=list)
    """(step, predicted loss) from its resume step to its end (about CURVE_POINTS steps)."""


@dataclass
class RunCurve:
    schedule: JobSchedule
    final_step: int
    losses: dict[int, float]

    @cached_property
    def lrs(self) -> np.ndarray:
        """The LR of optimizer steps 1..final: what `orch lr schedule` gives after 0..final-1 iterations."""
        return np.array([lr for _step, lr in self.schedule.framework.curve(range(self.final_step), **self.schedule.params)])

    @cached_property
    def observed_steps(self) -> np.ndarray:
        """Its own logged steps (a cooldown's after its resume step: before it, the log is its pretrain run's)."""
        start = (self.schedule.resume_step or 0) if self.schedule.phase == "cooldown" else 0
        return np.array(sorted(step for step in self.losses if start < step <= self.final_step), dtype=np.int64)

    def curve(self, steps: np.ndarray | None = None, with_loss: bool = True) -> Curve:
        steps = self.observed_steps if steps is None else steps
        loss = np.array([self.losses[int(step)] for step in steps]) if with_loss else None
        return Curve(self.schedule.name, 1, self.lrs, steps, loss)

    @property
    def finished(self) -> bool:
        return self.final_step in self.losses

    def decays(self) -> bool:
        """Does its LR fall below its peak after reaching it (the warmup's rise aside)?"""
        lrs = self.lrs
        if not len(lrs):
            return False
        peak = int(np.argmax(lrs))
        return float(lrs[peak:].min()) < float(lrs[peak]) * (1 - 1e-9)


def _run_curves(jobs: Sequence[Job], keys: ResultKeys) -> tuple[dict[str, RunCurve], list]:
    runs = {str(run.run_dir): run for run in group_runs(jobs, keys.run_dir)}
    report = check_named_params([(name, run.params) for name, run in runs.items()])
    curves = {}
    for job_report in report.jobs:
        schedule = job_report.schedule
        losses: dict[int, float] = {}
        for log in runs[schedule.name].logs:
            losses.update({step: value for step, value in read_training_losses(log).items() if np.isfinite(value) and value > 0})
        final = int(float(runs[schedule.name].params.get("TRAIN_ITERS", schedule.horizon)))
        curves[schedule.name] = RunCurve(schedule, final, losses)
    return curves, report.jobs


def predict_branches(jobs: Sequence[Job], law: str = "mpl", bootstrap: int = 0, keys: ResultKeys = ResultKeys(),
                     seed: int = 0) -> list[BranchPrediction]:
    curves, reports = _run_curves(jobs, keys)
    branches = [report for report in reports if report.schedule.phase == "cooldown"]
    if not branches:
        raise UserError("no cooldown run in the campaign (a run whose PHASE names a cooldown, with a RESUME_STEP): "
                        "nothing to predict; `orch predict --schedules ... --observed ...` predicts any schedule")
    fits: dict[tuple[str, ...], LawFit] = {}
    predictions = []
    for report in branches:
        schedule = report.schedule
        branch = curves[schedule.name]
        result = BranchPrediction(schedule.name, report.parent.name if report.parent else "", schedule.resume_step or 0,
                                  branch.final_step)
        if branch.finished:
            result.observed = branch.losses[branch.final_step]
        own = branch.curve()
        result.observed_curve = [(int(step), float(loss)) for step, loss in zip(own.steps, own.loss)]
        predictions.append(result)
        if report.parent is None:
            result.why_not = "no pretrain run found for it (give its jobs a PARENT key naming the pretrain run folder)"
            continue
        siblings = [other.schedule.name for other in branches
                    if other.parent is report.parent and other.schedule.name != schedule.name
                    and curves[other.schedule.name].finished]
        training = [name for name in [report.parent.name, *siblings] if len(curves[name].observed_steps) >= MIN_OBSERVED]
        if not any(curves[name].decays() for name in training):
            result.why_not = ("no finished branch of its pretrain run to learn the drop from (a constant-LR curve "
                              "shows none)")
            continue
        key = tuple(sorted(training))
        if key not in fits:
            fits[key] = fit_law([curves[name].curve() for name in key], law, bootstrap=bootstrap, seed=seed)
        result.fitted_on = list(key)
        start = max(1, result.resume_step)
        steps = np.unique(np.linspace(start, branch.final_step, CURVE_POINTS).round().astype(int))
        loss, low, high = predict(fits[key], branch.curve(steps, with_loss=False))
        result.predicted_curve = [(int(step), float(value)) for step, value in zip(steps, loss)]
        result.loss = float(loss[-1])
        result.low, result.high = (float(low[-1]), float(high[-1])) if low is not None else (None, None)
    return predictions
