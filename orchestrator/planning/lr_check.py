"""`orch lr check`: draw a campaign's LR schedules and flag cooldowns that do not decay from their resume step.

Which params a job's schedule is read from (names are case-insensitive; `LR` = `lr` = `Lr`):
- an optional `lr_schedule:` mapping in the job's params, whose keys win over top-level ones;
- `lr_framework` (or `framework` inside `lr_schedule`): megatron-lm | megatron-deepspeed |
  schedules-and-scaling. Without it: schedules-and-scaling if `iterations` is set and `train_iters` is not,
  megatron-deepspeed if a Megatron-DeepSpeed-only key is set (`lr_constant_plus_cooldown`, ...), else megatron-lm;
- every parameter of that framework's `lr_at`, i.e. its flags in snake_case: `LR`, `MIN_LR`, `TRAIN_ITERS`,
  `LR_DECAY_ITERS`, `LR_WARMUP_ITERS`, `LR_WARMUP_FRACTION`, `LR_WARMUP_INIT`, `LR_DECAY_STYLE`,
  `LR_WSD_DECAY_ITERS`, `LR_WSD_DECAY_STYLE`, `LR_CONSTANT_PLUS_COOLDOWN`, `LR_CONSTANT_PLUS_COOLDOWN_FRAC`,
  `ITERATIONS`, `WARMUP_STEPS`, `WSD_FRACT_DECAY`, `WSD_FINAL_LR_SCALE`, `DECAY_TYPE`, ...;
- the phase: `PHASE` (a value containing "cool" means cooldown), else cooldown when a resume step is set;
- the resume step of a cooldown: `RESUME_STEP`, `RESUME_ITER`, `CHECKPOINT_ITER` or `START_ITER`;
- the pretrain run a cooldown branches from: `PARENT` or `PRETRAIN_JOB` (a job name); without it, the pretrain
  job that shares the most parameter values with the cooldown (same model, LR, mode, ...), if exactly one does.
A job without an `LR` (and without `lr_schedule`) has no schedule and is listed as skipped.

A cooldown is FLAGGED when its LR does not leave the plateau at its resume step S (within one step),
e.g. the S/T mistake: a Megatron-DeepSpeed cooldown with TRAIN_ITERS = T (or LR_DECAY_ITERS = T) resumed at S
needs `lr_constant_plus_cooldown_frac` = (T - S) / T; S / T starts the decay at step T - S instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from orchestrator.errors import UserError
from orchestrator.planning.lr_schedules import FRAMEWORKS, megatron_deepspeed, parameter_names, required_parameters

SCHEDULE_BLOCK_KEY = "lr_schedule"
FRAMEWORK_KEYS: tuple[str, ...] = ("lr_framework", "framework")
PHASE_KEY = "phase"
RESUME_KEYS: tuple[str, ...] = ("resume_step", "resume_iter", "checkpoint_iter", "start_iter")
PARENT_KEYS: tuple[str, ...] = ("parent", "pretrain_job")
MDS_ONLY_KEYS: tuple[str, ...] = (
    "lr_constant_plus_cooldown", "lr_constant_plus_cooldown_frac", "constant_lr", "lr_cooldown_fraction",
    "lr_constant_fraction", "lr_decay_tokens", "lr_warmup_tokens",
)
STEP_TOLERANCE = 1.0  # steps; Megatron-DeepSpeed's T - frac*T is rarely an integer
JUMP_TOLERANCE = 1e-6  # relative LR difference at the resume step that counts as a jump
PLATEAU_TOLERANCE = 1e-9  # relative: the last warmup step may land a rounding error above the peak LR


@dataclass
class JobSchedule:
    name: str
    framework: ModuleType
    params: dict[str, Any]
    phase: str  # "pretrain" | "cooldown"
    resume_step: int | None = None
    parent_name: str | None = None
    param_items: frozenset[tuple[str, str]] = frozenset()
    """The job's (key, repr(value)) pairs: a cooldown without PARENT branches from the pretrain job sharing most."""

    def lr_at(self, step: float) -> float:
        return float(self.framework.lr_at(step, **self.params))

    @property
    def horizon(self) -> int:
        return int(self.framework.horizon(**self.params))

    @property
    def warmup_end(self) -> float:
        return float(self.framework.warmup_end(**self.params))


@dataclass
class JobReport:
    schedule: JobSchedule
    decay_start: int | None
    """Last step at the plateau LR; None when the LR never decays."""
    parent: JobSchedule | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return bool(self.problems)


@dataclass
class CheckReport:
    jobs: list[JobReport]
    skipped: list[str]

    @property
    def flagged(self) -> list[JobReport]:
        return [job for job in self.jobs if job.flagged]


# -- reading params ----------------------------------------------------------------------------------
def _lowercase_keys(params: Mapping[str, Any], job: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    block: Mapping[str, Any] | None = None
    for key, value in params.items():
        if str(key).lower() == SCHEDULE_BLOCK_KEY:
            if not isinstance(value, Mapping):
                raise UserError(f"job {job!r}: {key} must be a mapping of schedule parameters")
            block = value
        else:
            merged[str(key).lower()] = value
    for key, value in (block or {}).items():
        merged[str(key).lower()] = value
    return merged


def _convert(value: Any, annotation: str, job: str, key: str) -> Any:
    """Config values are often strings (templates, -f fixes): convert to the parameter's type."""
    try:
        if "bool" in annotation:
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in {"1", "0", "true", "false", "yes", "no", "on", "off", ""}:
                    raise ValueError(value)
                return lowered in {"1", "true", "yes", "on"}
            return bool(value)
        if annotation.startswith("int"):
            number = float(value)
            if number != int(number):
                raise ValueError(value)
            return int(number)
        if annotation.startswith("float") or annotation.startswith("int"):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise UserError(f"job {job!r}: {key.upper()} = {value!r} is not a valid {annotation.split(' ')[0]}") from None


def _framework_for(values: Mapping[str, Any], job: str) -> ModuleType:
    for key in FRAMEWORK_KEYS:
        if key in values:
            name = str(values[key]).strip().lower()
            if name not in FRAMEWORKS:
                raise UserError(f"job {job!r}: {key.upper()} = {name!r}; choose one of {', '.join(FRAMEWORKS)}")
            return FRAMEWORKS[name]
    if "iterations" in values and "train_iters" not in values:
        return FRAMEWORKS["schedules-and-scaling"]
    if any(key in values for key in MDS_ONLY_KEYS):
        return megatron_deepspeed
    return FRAMEWORKS["megatron-lm"]


def schedule_from_params(name: str, params: Mapping[str, Any]) -> JobSchedule | None:
    """The schedule a job's params describe, or None when they have no `LR`."""
    values = _lowercase_keys(params, name)
    if "lr" not in values:
        return None
    framework = _framework_for(values, name)
    schedule_params: dict[str, Any] = {}
    for key, parameter in parameter_names(framework).items():
        if key in values and values[key] is not None and values[key] != "":
            schedule_params[key] = _convert(values[key], str(parameter.annotation), name, key)
    missing = [key.upper() for key in required_parameters(framework) if key not in schedule_params]
    if missing:
        raise UserError(f"job {name!r}: {framework.FRAMEWORK} schedule needs {', '.join(missing)}")

    resume_step = next((values[key] for key in RESUME_KEYS if key in values and values[key] not in (None, "")), None)
    if resume_step is not None:
        resume_step = _convert(resume_step, "int", name, "resume_step")
    phase_value = str(values.get(PHASE_KEY, "")).lower()
    phase = "cooldown" if "cool" in phase_value or (not phase_value and resume_step) else "pretrain"
    if phase == "cooldown" and resume_step is None:
        raise UserError(f"job {name!r}: a cooldown needs its resume step ({' / '.join(k.upper() for k in RESUME_KEYS)})")
    parent = next((str(values[key]) for key in PARENT_KEYS if values.get(key)), None)
    schedule = JobSchedule(name, framework, schedule_params, phase, resume_step, parent,
                           frozenset((key, repr(value)) for key, value in params.items()))
    try:
        schedule.lr_at(0)  # surface the framework's own checks now, naming the job
    except UserError as error:
        raise UserError(f"job {name!r}: {error}") from None
    return schedule


# -- checking ----------------------------------------------------------------------------------------
def decay_start(schedule: JobSchedule) -> int | None:
    """Last step (after warmup) at the plateau LR, found by bisection: LRs never rise after warmup."""
    low = math.ceil(schedule.warmup_end)
    plateau = schedule.lr_at(low) * (1 - PLATEAU_TOLERANCE)
    high = schedule.horizon
    if schedule.lr_at(high) >= plateau or low >= high:
        return None
    if schedule.lr_at(low + 1) < plateau:
        return low
    # invariant: lr(low) on the plateau, lr(high) below it
    while high - low > 1:
        middle = (low + high) // 2
        if schedule.lr_at(middle) >= plateau:
            low = middle
        else:
            high = middle
    return low


def _s_over_t_hint(schedule: JobSchedule) -> str:
    params = schedule.params
    if schedule.framework is not megatron_deepspeed or not params.get("lr_constant_plus_cooldown"):
        return ""
    built = megatron_deepspeed.scheduler(**params)
    total = built.decay_steps / built.samples_per_iteration  # the decay horizon: --lr-decay-iters if given
    frac = params.get("lr_constant_plus_cooldown_frac", megatron_deepspeed.DEFAULT_COOLDOWN_FRAC)
    assert schedule.resume_step is not None
    right = (total - schedule.resume_step) / total
    mistake = " (the S/T mistake)" if math.isclose(frac, schedule.resume_step / total, rel_tol=1e-6) else ""
    return f"; lr_constant_plus_cooldown_frac = {frac:g}{mistake}, use (T-S)/T = {right:g}"


def _find_parent(schedule: JobSchedule, pretrains: Mapping[str, JobSchedule]) -> JobSchedule | None:
    if schedule.parent_name is not None:
        if schedule.parent_name not in pretrains:
            raise UserError(f"job {schedule.name!r}: PARENT {schedule.parent_name!r} is not a pretrain job of the campaign")
        return pretrains[schedule.parent_name]
    if len(pretrains) <= 1:
        return next(iter(pretrains.values()), None)
    return _most_alike(schedule, list(pretrains.values()))


def _most_alike(cooldown: JobSchedule, pretrains: Sequence[JobSchedule]) -> JobSchedule | None:
    """The pretrain job sharing the most (key, value) pairs with the cooldown; None on a tie."""
    scores = sorted(((len(cooldown.param_items & p.param_items), p) for p in pretrains),
                    key=lambda pair: pair[0], reverse=True)
    return scores[0][1] if scores[0][0] > scores[1][0] else None


def check_schedules(schedules: Sequence[JobSchedule], skipped: Sequence[str] = ()) -> CheckReport:
    pretrains = {s.name: s for s in schedules if s.phase == "pretrain"}
    reports: list[JobReport] = []
    for schedule in schedules:
        report = JobReport(schedule, decay_start(schedule))
        if schedule.phase == "cooldown":
            step = schedule.resume_step
            assert step is not None
            report.parent = _find_parent(schedule, pretrains)
            if report.decay_start is None:
                report.problems.append(f"its LR never decays (resume step {step})")
            elif abs(report.decay_start - step) > STEP_TOLERANCE:
                report.problems.append(
                    f"decay starts at step {report.decay_start}, not at its resume step {step}{_s_over_t_hint(schedule)}"
                )
            if report.parent is not None:
                before, after = report.parent.lr_at(step), schedule.lr_at(step)
                if not math.isclose(before, after, rel_tol=JUMP_TOLERANCE, abs_tol=1e-15):
                    report.warnings.append(
                        f"LR jumps from {before:.4g} ({report.parent.name}) to {after:.4g} at resume step {step}"
                    )
        reports.append(report)
    return CheckReport(reports, list(skipped))


def check_named_params(jobs: Sequence[tuple[str, Mapping[str, Any]]]) -> CheckReport:
    """Check (name, params) pairs: what `check_jobs` does, without the config engine."""
    schedules: list[JobSchedule] = []
    skipped: list[str] = []
    for name, params in jobs:
        schedule = schedule_from_params(name, params)
        if schedule is None:
            skipped.append(name)
        else:
            schedules.append(schedule)
    if not schedules:
        raise UserError("no job has an LR schedule (an `LR` key or an `lr_schedule:` block); nothing to check")
    return check_schedules(schedules, skipped)


def check_jobs(jobs: Sequence[Any]) -> CheckReport:
    """Check `orchestrator.jobs.Job`s (anything with `.name` and `.params`)."""
    return check_named_params([(job.name, job.params) for job in jobs])


# -- output ------------------------------------------------------------------------------------------
def format_report(report: CheckReport) -> str:
    lines: list[str] = []
    for job in report.jobs:
        s = job.schedule
        decay = "never decays" if job.decay_start is None else f"decays from step {job.decay_start}"
        head = (f"{s.name} [{s.framework.FRAMEWORK}] {s.phase}: peak {s.lr_at(math.ceil(s.warmup_end)):.4g}, "
                f"warmup {s.warmup_end:g}, {decay}, ends at {s.horizon} with {s.lr_at(s.horizon):.4g}")
        if s.phase == "cooldown":
            parent = f" from {job.parent.name}" if job.parent else ""
            head += f"; resumes{parent} at step {s.resume_step}"
        lines.append(head + ("  FLAGGED" if job.flagged else "  ok"))
        lines.extend(f"    problem: {problem}" for problem in job.problems)
        lines.extend(f"    warning: {warning}" for warning in job.warnings)
    if report.skipped:
        lines.append(f"skipped (no LR): {', '.join(report.skipped)}")
    flagged = len(report.flagged)
    lines.append(f"{len(report.jobs)} schedule(s) checked, {flagged} cooldown(s) flagged")
    return "\n".join(lines)


def _drawn_steps(schedule: JobSchedule, max_points: int) -> list[int]:
    """The steps a schedule is drawn at: a pretrain's whole run, a cooldown's from its resume step."""
    from orchestrator.planning.lr_schedules.common import sample_steps

    steps = sample_steps(schedule.horizon, max_points)
    if schedule.phase == "cooldown":
        assert schedule.resume_step is not None
        steps = [step for step in steps if step >= schedule.resume_step] or [schedule.resume_step]
        steps = sorted({schedule.resume_step, *steps})
    return steps


def curves(report: CheckReport, max_points: int = 2000) -> list[tuple[str, list[int], list[float], bool]]:
    """(name, steps, LRs, flagged) of every schedule, as `plot` draws them (the report's interactive chart)."""
    drawn = []
    for job in report.jobs:
        steps = _drawn_steps(job.schedule, max_points)
        drawn.append((job.schedule.name, steps, [job.schedule.lr_at(step) for step in steps], job.flagged))
    return drawn


def plot(report: CheckReport, output: str, max_points: int = 2000) -> None:
    """Pretrain curves in full; each cooldown from its resume step, in its own colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from orchestrator.planning.lr_schedules.common import sample_steps

    figure, axes = plt.subplots(figsize=(9, 5))
    for job, (_name, steps, lrs, _flagged) in zip(report.jobs, curves(report, max_points)):
        s = job.schedule
        style = "--" if job.flagged else "-"
        label = s.name + (" (FLAGGED)" if job.flagged else "")
        axes.plot(steps, lrs, style, label=label, linewidth=1.5 if s.phase == "pretrain" else 1)
        if s.phase == "cooldown":
            colour = axes.lines[-1].get_color()
            axes.plot([s.resume_step], [s.lr_at(s.resume_step)], "o", markersize=3, color=colour)
            if job.flagged:  # show where this cooldown's own decay really starts, before the resume step
                before = [step for step in sample_steps(s.resume_step, max_points)]
                axes.plot(before, [s.lr_at(step) for step in before], ":", color=colour, linewidth=0.8)
    axes.set_xlabel("iteration")
    axes.set_ylabel("learning rate")
    axes.set_title("LR schedules (dashed: flagged cooldowns)")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(output, dpi=120, format="png")
    plt.close(figure)
