"""Collect a campaign's evaluation results and validation losses into one table.

Each job's run folder is its `RUN_DIR` parameter (`ResultKeys.run_dir`); the TRAIN and CONVERT_EVAL jobs
of one run share it, so results are grouped per run folder and keyed by the parameters all of that run's
jobs agree on. Per run and iteration a row holds:

- `val_loss`: from the run's job logs (Megatron's `validation loss at iteration N | lm loss value: X`),
  or a numeric top-level `val_loss` in results.json;
- every numeric metric of `eval_results/iter_<N>/results.json` (lm-evaluation-harness layout
  `{"results": {task: {"acc,none": ...}}}` -> column `task/acc`);
- `tokens` = iteration x the `TOKENS_PER_STEP` parameter, when the jobs have it.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from orchestrator.errors import UserError
from orchestrator.jobs import SPECIAL_KEYS, Job

_VALIDATION_LINE = re.compile(
    r"validation loss at iteration (\d+)\b.*?lm loss value: ([-+0-9.eE]+|nan|inf)", re.IGNORECASE
)
_RESULTS_DIR = re.compile(r"iter_0*(\d+)\Z")
FIXED_COLUMNS = ("iteration", "tokens", "val_loss")


@dataclass(frozen=True)
class ResultKeys:
    """Which job parameters hold the run folder, tokens per step, model size and phase."""

    run_dir: str = "RUN_DIR"
    tokens_per_step: str = "TOKENS_PER_STEP"
    model_size: str = "MODEL_SIZE"
    phase: str = "PHASE"


@dataclass
class Run:
    run_dir: Path
    params: dict[str, Any]
    logs: list[Path]


@dataclass
class ResultTable:
    param_columns: list[str]
    metric_columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return [*self.param_columns, *FIXED_COLUMNS, *self.metric_columns]


def group_runs(jobs: Sequence[Job], run_dir_key: str) -> list[Run]:
    """One `Run` per distinct run folder, with the parameters shared by all its jobs."""
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        if run_dir_key not in job.params:
            raise UserError(
                f"job {job.name!r} has no {run_dir_key!r} parameter: `orch results` finds each run's "
                f"eval_results/ under it (or pass --run-dir-key)"
            )
        groups.setdefault(str(job.params[run_dir_key]), []).append(job)
    runs = []
    for run_dir, members in groups.items():
        first = members[0].params
        shared = {key: value for key, value in first.items() if all(m.params.get(key) == value for m in members[1:])}
        logs = list(dict.fromkeys(Path(m.output_file) for m in members))
        runs.append(Run(Path(run_dir), shared, logs))
    return runs


def read_validation_losses(log: Path) -> dict[int, float]:
    """Iteration -> validation loss from a Megatron-style log; a missing log gives nothing."""
    losses: dict[int, float] = {}
    try:
        with open(log, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                match = _VALIDATION_LINE.search(line)
                if match:
                    losses[int(match.group(1))] = float(match.group(2))
    except OSError:
        pass
    return losses


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def flatten_metrics(data: Mapping[str, Any]) -> dict[str, float]:
    """Numeric metrics of one results.json: lm-eval's `results` section and numeric top-level keys."""
    metrics: dict[str, float] = {}
    for key, value in data.items():
        number = _number(value)
        if number is not None:
            metrics[key] = number
    sections = data.get("results")
    if isinstance(sections, Mapping):
        for task, values in sections.items():
            if not isinstance(values, Mapping):
                continue
            for name, value in values.items():
                number = _number(value)
                if number is not None:
                    metrics[f"{task}/{name.removesuffix(',none')}"] = number
    return metrics


def read_eval_results(run_dir: Path) -> dict[int, dict[str, float]]:
    """Iteration -> metrics for every `eval_results/iter_<N>/results.json` of a run."""
    found: dict[int, dict[str, float]] = {}
    for path in sorted((run_dir / "eval_results").glob("iter_*/results.json")):
        match = _RESULTS_DIR.match(path.parent.name)
        if not match:
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise UserError(f"{path}: unreadable results file: {error}") from None
        if isinstance(data, Mapping):
            found[int(match.group(1))] = flatten_metrics(data)
    return found


def _describing_columns(runs: Sequence[Run], keys: ResultKeys) -> list[str]:
    """Parameters that tell runs apart: varying, plain values (paths and commands are left out)."""
    columns: list[str] = []
    # A named option (`PHASE: [- PRETRAIN: {...}]`) also leaves a PRETRAIN key behind: not a parameter.
    option_names = {value for run in runs for value in run.params.values() if isinstance(value, str)}
    for key in runs[0].params if runs else []:
        if key in SPECIAL_KEYS or key == keys.run_dir or key in option_names:
            continue
        values = [run.params.get(key) for run in runs]
        if any(isinstance(v, str) and ("/" in v or " " in v) for v in values):
            continue
        if len({repr(v) for v in values}) > 1 or key in (keys.model_size, keys.phase):
            columns.append(key)
    return columns


def _tokens(run: Run, iteration: int, key: str) -> int | None:
    per_step = run.params.get(key)
    try:
        return iteration * int(per_step) if per_step is not None else None
    except (TypeError, ValueError):
        return None


def run_rows(run: Run, keys: ResultKeys = ResultKeys()) -> list[dict[str, Any]]:
    """One run's rows, one per evaluated or validated iteration: iteration, tokens, val_loss and metrics."""
    evaluations = read_eval_results(run.run_dir)
    losses: dict[int, float] = {}
    for log in run.logs:
        losses.update(read_validation_losses(log))
    rows = []
    for iteration in sorted(set(evaluations) | set(losses)):
        metrics = dict(evaluations.get(iteration, {}))
        val_loss = losses.get(iteration, metrics.pop("val_loss", None))
        metrics.pop("val_loss", None)
        # A metric named like a fixed column (an evaluator's own `tokens` count) must not overwrite it.
        metrics = {(f"eval/{name}" if name in FIXED_COLUMNS else name): value for name, value in metrics.items()}
        rows.append({"iteration": iteration, "tokens": _tokens(run, iteration, keys.tokens_per_step),
                     "val_loss": val_loss, **metrics})
    return rows


def collect_results(jobs: Sequence[Job], keys: ResultKeys = ResultKeys()) -> ResultTable:
    runs = group_runs(jobs, keys.run_dir)
    param_columns = _describing_columns(runs, keys)
    metric_columns: dict[str, None] = {}
    rows: list[dict[str, Any]] = []
    for run in runs:
        for found in run_rows(run, keys):
            metric_columns.update(dict.fromkeys(key for key in found if key not in FIXED_COLUMNS))
            rows.append({**{key: run.params.get(key) for key in param_columns}, **found})
    return ResultTable(param_columns, list(metric_columns), rows)


def write_csv(table: ResultTable, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=table.columns, restval="")
        writer.writeheader()
        for row in table.rows:
            writer.writerow({key: "" if value is None else value for key, value in row.items()})
    temporary.replace(path)


def plot_validation_loss(table: ResultTable, path: str | Path | BinaryIO, keys: ResultKeys = ResultKeys()) -> int:
    """Validation loss against training tokens, one colour per model size, pretrain solid / cooldown dashed.

    Returns the number of curves drawn (0: nothing to plot, no file written).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[tuple[Any, ...], list[tuple[float, float]]] = {}
    use_tokens = any(row.get("tokens") is not None for row in table.rows)
    for row in table.rows:
        loss = row.get("val_loss")
        if loss is None or not math.isfinite(loss):
            continue
        x = row["tokens"] if use_tokens else row["iteration"]
        if x is None:
            continue
        run_key = tuple(row.get(key) for key in table.param_columns)
        curves.setdefault(run_key, []).append((float(x), float(loss)))
    if not curves:
        return 0
    sizes = list(dict.fromkeys(row.get(keys.model_size) for row in table.rows))
    colours = plt.get_cmap("viridis")
    size_position = table.param_columns.index(keys.model_size) if keys.model_size in table.param_columns else None
    phase_position = table.param_columns.index(keys.phase) if keys.phase in table.param_columns else None
    figure, axes = plt.subplots(figsize=(8, 5))
    labelled: set[Any] = set()
    for run_key, points in curves.items():
        points.sort()
        size = run_key[size_position] if size_position is not None else None
        phase = str(run_key[phase_position]) if phase_position is not None else ""
        colour = colours(sizes.index(size) / max(1, len(sizes) - 1)) if size in sizes else "black"
        cooldown = phase.upper().startswith("COOL")
        label = None
        if size not in labelled:  # one legend entry per model size
            labelled.add(size)
            label = f"{keys.model_size}={size}" if size is not None else "runs"
        style = "--" if cooldown else "-"
        axes.plot(*zip(*points), color=colour, linestyle=style, marker="o", markersize=3, alpha=0.8, label=label)
    axes.plot([], [], color="grey", linestyle="-", label="pretrain")
    axes.plot([], [], color="grey", linestyle="--", label="cooldown")
    axes.set_xlabel("training tokens" if use_tokens else "iteration")
    axes.set_ylabel("validation loss")
    axes.set_xscale("log")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    if isinstance(path, (str, Path)):  # else a file object (the report draws into memory)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, format="png")
    plt.close(figure)
    return len(curves)
