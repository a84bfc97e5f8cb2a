"""The CSVs `orch predict` reads: schedules (`curve,step,lr`), observed losses (`curve,step,loss`) and where to
predict (`curve,step`), checked and turned into `loss_laws.Curve`s.

S.csv holds every step of every curve, observed or to be predicted: `lr` is the LR of optimizer step `step`
(what `orch lr schedule --csv` prints). Every mistake is a `UserError` naming the file, line, curve or step;
many of one kind are said once, with their count and the first of them.
"""

from __future__ import annotations

import csv
from collections import defaultdict
import numpy as np

from orchestrator.analysis.loss_laws import Curve
from orchestrator.errors import UserError

MIN_OBSERVED = 3


def _rows(path: str, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in reader.fieldnames or []]
            missing = [name for name in columns if name not in header]
            if missing:
                raise UserError(f"{path}: no column {', '.join(map(repr, missing))} (it has {', '.join(header) or 'none'}; "
                                f"needs {','.join(columns)})")
            return [(number, {key.strip(): (value or "").strip() for key, value in row.items() if key})
                    for number, row in enumerate(reader, start=2)]
    except OSError as error:
        raise UserError(f"{path}: cannot read it ({error.strerror})") from None


def _number(path: str, line: int, row: dict[str, str], column: str, whole: bool = False) -> float | int:
    text = row[column]
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if whole and not value.is_integer():
        raise UserError(f"{path} line {line}: {column} {text!r} is not a whole number")
    if not whole and value != value:
        raise UserError(f"{path} line {line}: {column} {text!r} is not a number")
    return int(value) if whole else value


def read_schedules(path: str) -> dict[str, tuple[int, np.ndarray]]:
    """curve -> (first step, the LR of every step from it on)."""
    found: dict[str, dict[int, float]] = defaultdict(dict)
    for line, row in _rows(path, ("curve", "step", "lr")):
        step, lr = _number(path, line, row, "step", whole=True), _number(path, line, row, "lr")
        if step in found[row["curve"]]:
            raise UserError(f"{path} line {line}: curve {row['curve']!r} step {step} has a second LR")
        if not np.isfinite(lr) or lr < 0:
            raise UserError(f"{path} line {line}: lr {lr} of curve {row['curve']!r} step {step} is not a learning rate")
        found[row["curve"]][step] = lr
    if not found:
        raise UserError(f"{path}: no schedule rows")
    schedules = {}
    for curve, lrs in found.items():
        first, last = min(lrs), max(lrs)
        if len(lrs) != last - first + 1:
            gaps = [step for step in range(first, last + 1) if step not in lrs]
            raise UserError(f"{path}: curve {curve!r} has no LR for {len(gaps)} step(s) between {first} and {last} "
                            f"(first: {gaps[0]}); a schedule needs the LR of every step")
        schedules[curve] = (first, np.array([lrs[step] for step in range(first, last + 1)]))
    return schedules


def _points(path: str, columns: tuple[str, ...], schedules: dict[str, tuple[int, np.ndarray]]):
    """curve -> {step: value or None}, every step checked against its schedule."""
    found: dict[str, dict[int, float | None]] = defaultdict(dict)
    outside: list[str] = []
    areas = {name: np.cumsum(lrs) for name, (_first, lrs) in schedules.items()}
    for line, row in _rows(path, columns):
        curve, step = row["curve"], _number(path, line, row, "step", whole=True)
        if curve not in schedules:
            raise UserError(f"{path} line {line}: curve {curve!r} has no schedule (schedule curves: "
                            f"{', '.join(sorted(schedules)[:8])}{', ...' if len(schedules) > 8 else ''})")
        first, lrs = schedules[curve]
        if not first <= step < first + len(lrs):
            outside.append(f"line {line} ({curve!r} step {step})")
            continue
        if areas[curve][step - first] <= 0:
            raise UserError(f"{path} line {line}: curve {curve!r} step {step}: its LRs so far sum to 0 (no training "
                            "yet), a loss law has nothing to say there")
        value = None
        if "loss" in columns:
            value = _number(path, line, row, "loss")
            if not value > 0 or not np.isfinite(value):
                raise UserError(f"{path} line {line}: loss {row['loss']!r} must be a positive number")
        found[curve][step] = value
    if outside:
        raise UserError(f"{path}: {len(outside)} step(s) have no LR in the schedules (first: {outside[0]}); "
                        "add those steps' LRs to the schedule CSV")
    return found


def read_observed(path: str, schedules: dict[str, tuple[int, np.ndarray]]) -> list[Curve]:
    curves = []
    for name, points in _points(path, ("curve", "step", "loss"), schedules).items():
        if len(points) < MIN_OBSERVED:
            raise UserError(f"{path}: curve {name!r} has {len(points)} observed point(s); a curve needs at least "
                            f"{MIN_OBSERVED} to be fitted (drop it or add points)")
        steps = np.array(sorted(points))
        first, lrs = schedules[name]
        curves.append(Curve(name, first, lrs, steps, np.array([points[step] for step in steps])))
    if not curves:
        raise UserError(f"{path}: no observed losses")
    return curves


def read_targets(path: str | None, schedules: dict[str, tuple[int, np.ndarray]], observed: list[Curve]) -> list[Curve]:
    """Where to predict: A.csv's steps, or every step (after the first) of every curve no loss was observed on."""
    if path is not None:
        chosen = {name: np.array(sorted(points)) for name, points in _points(path, ("curve", "step"), schedules).items()}
    else:
        seen = {curve.name for curve in observed}
        chosen = {name: np.arange(first, first + len(lrs))[np.cumsum(lrs) > 0]
                  for name, (first, lrs) in schedules.items() if name not in seen}
        if not chosen:
            raise UserError("every schedule curve has observed losses: name the steps to predict with --at A.csv "
                            "(columns curve,step)")
    return [Curve(name, schedules[name][0], schedules[name][1], steps) for name, steps in chosen.items() if len(steps)]

