"""Collect a campaign's evaluation results and training-log losses into one table.

Each job's run folder is its `RUN_DIR` parameter (`ResultKeys.run_dir`); the TRAIN and CONVERT_EVAL jobs
of one run share it, so results are grouped per run folder and keyed by the parameters all of that run's
jobs agree on. Per run and iteration a row holds, each column naming where its number comes from:

- `log_val_loss` / `log_test_loss`: the training log's `validation loss at iteration N ...` lines
  (Megatron-LM @d98e8a64 `training.py: evaluate_and_print_results` prints `lm loss value: X`, and after
  training `... at iteration N on validation set` / `on test set`; argonne-lcf/Megatron-DeepSpeed
  @ffa3456d prints `lm loss value=X` and `... from validation set` / `from test set`). Several validation
  sets (`validation-NAME loss at ...`) give `log_val_loss-NAME`.
- `<task>/<metric>` (`<task>/<metric>,<filter>` for a filter other than `none`): lm-evaluation-harness's
  metrics, i.e. the numbers under `results` and `groups` whose key is `metric,filter`. Run metadata
  (`date`, `sample_len`, `eot_token_id`, ...) is never a column. lm-eval writes `results_<date>.json`
  under `--output_path DIR/<model_name_sanitized>/`, or `<stem>_<date>.json` beside an output path
  ending in `.json` (lm_eval 0.4 `loggers/evaluation_tracker.py`): every such file anywhere under
  `eval_results/iter_<N>/` is read, and per task the newest (by the date in its name) wins.
- `eval/<name>`: a flat evaluator's `eval_results/iter_<N>/results.json` (the tinylm example's
  `{"val_loss": ..., "perplexity": ...}`): its numeric top-level keys, e.g. `eval/val_loss`.
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

_LOG_LOSS_LINE = re.compile(
    r"validation(?P<suffix>-\S+)? loss at iteration (?P<iteration>\d+)(?P<where>[^|]*)\|"
    r".*?lm loss value[:=]\s*(?P<value>[-+]?(?:[0-9.]+(?:[eE][-+]?\d+)?|nan|inf))",
    re.IGNORECASE,
)
_RESULTS_DIR = re.compile(r"iter_0*(\d+)\Z")
_LM_EVAL_DATE = re.compile(r"_(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?)\.json\Z")
FLAT_EVALUATOR_FILE = "results.json"
LOG_VAL_LOSS = "log_val_loss"
LOG_TEST_LOSS = "log_test_loss"
EVAL_VAL_LOSS = "eval/val_loss"
FIXED_COLUMNS = ("iteration", "tokens", LOG_VAL_LOSS, LOG_TEST_LOSS)
RUN_COLUMN = "run"


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
    notes: list[str] = field(default_factory=list)
    """Choices made while reading (which of several results files was used), for the user to see."""
    extra_columns: list[str] = field(default_factory=lambda: [RUN_COLUMN])
    """Last in the CSV: the run folder, and what other layers add (`orch results` adds the fit's `fit`)."""

    @property
    def columns(self) -> list[str]:
        return [*self.param_columns, *FIXED_COLUMNS, *self.metric_columns, *self.extra_columns]


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


def read_log_losses(log: Path) -> dict[int, dict[str, float]]:
    """Iteration -> {log_val_loss | log_test_loss | log_val_loss-NAME: value} from a Megatron-style log."""
    losses: dict[int, dict[str, float]] = {}
    try:
        with open(log, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                match = _LOG_LOSS_LINE.search(line)
                if not match:
                    continue
                column = LOG_TEST_LOSS if "test set" in match["where"].lower() else LOG_VAL_LOSS
                if match["suffix"]:
                    column += match["suffix"]
                losses.setdefault(int(match["iteration"]), {})[column] = float(match["value"])
    except OSError:
        pass
    return losses


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def lm_eval_metrics(data: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Task -> {column: value} of one lm-eval results file: numbers under `results` and `groups` keyed `metric,filter`."""
    tasks: dict[str, dict[str, float]] = {}
    for section in ("results", "groups"):
        entries = data.get(section)
        if not isinstance(entries, Mapping):
            continue
        for task, values in entries.items():
            if not isinstance(values, Mapping):
                continue
            for name, value in values.items():
                number = _number(value)
                if number is None or "," not in name:
                    continue  # sample_len, alias, sample_count: run metadata, not metrics
                metric, _, filter_name = name.partition(",")
                column = f"{task}/{metric}" if filter_name == "none" else f"{task}/{metric},{filter_name}"
                tasks.setdefault(str(task), {})[column] = number
    return tasks


def flat_evaluator_metrics(data: Mapping[str, Any]) -> dict[str, float]:
    """`eval/<key>` for the numeric top-level keys of a flat evaluator's results.json (iteration excluded)."""
    return {f"eval/{key}": number for key, value in data.items()
            if key != "iteration" and (number := _number(value)) is not None}


def _age_key(path: Path) -> tuple[str, float]:
    """lm-eval's date in the file name (an ISO time, so text order is time order), then the mtime."""
    match = _LM_EVAL_DATE.search(path.name)
    try:
        mtime = path.stat().st_mtime
    except OSError:
        mtime = 0.0
    return (match.group(1) if match else "", mtime)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: unreadable results file: {error}") from None


def read_iteration_results(folder: Path, notes: list[str] | None = None) -> dict[str, float]:
    """Every metric found under one `eval_results/iter_<N>/` folder (see the module docstring)."""
    metrics: dict[str, float] = {}
    lm_eval_files = []
    for path in folder.rglob("*.json"):
        data = _read_json(path)
        if not isinstance(data, Mapping):
            continue
        if isinstance(data.get("results"), Mapping):
            lm_eval_files.append((path, data))
        elif path.name == FLAT_EVALUATOR_FILE and path.parent == folder:
            metrics.update(flat_evaluator_metrics(data))
    lm_eval_files.sort(key=lambda item: _age_key(item[0]))  # oldest first
    chosen: dict[str, Path] = {}
    for path, data in lm_eval_files:  # oldest first: a newer file's task replaces an older one's
        for task, values in lm_eval_metrics(data).items():
            if task in chosen:
                for column in [c for c in metrics if c.startswith(f"{task}/")]:
                    del metrics[column]
            metrics.update(values)
            chosen[task] = path
    if notes is not None and len(lm_eval_files) > 1:
        used = sorted({str(path.relative_to(folder)) for path in chosen.values()})
        notes.append(f"{folder}: {len(lm_eval_files)} lm-eval results files; newest per task used: {', '.join(used)}")
    return metrics


def read_eval_results(run_dir: Path, notes: list[str] | None = None) -> dict[int, dict[str, float]]:
    """Iteration -> metrics for every `eval_results/iter_<N>/` folder of a run."""
    found: dict[int, dict[str, float]] = {}
    root = run_dir / "eval_results"
    if not root.is_dir():
        return found
    for folder in sorted(root.iterdir()):
        match = _RESULTS_DIR.match(folder.name)
        if match and folder.is_dir():
            metrics = read_iteration_results(folder, notes)
            if metrics:
                found[int(match.group(1))] = metrics
    return found


def default_loss_column(rows: Sequence[Mapping[str, Any]]) -> str:
    """What `orch fit` and the plots use unless told: the evaluator's held-out loss where the campaign has
    one (every checkpoint, cooldown ends included), else the training log's validation loss. Never a mix."""
    return EVAL_VAL_LOSS if any(row.get(EVAL_VAL_LOSS) is not None for row in rows) else LOG_VAL_LOSS


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


def run_rows(run: Run, keys: ResultKeys = ResultKeys(), notes: list[str] | None = None) -> list[dict[str, Any]]:
    """One run's rows, one per evaluated or validated iteration: iteration, tokens, log losses and metrics."""
    evaluations = read_eval_results(run.run_dir, notes)
    losses: dict[int, dict[str, float]] = {}
    for log in run.logs:
        for iteration, values in read_log_losses(log).items():
            losses.setdefault(iteration, {}).update(values)
    rows = []
    for iteration in sorted(set(evaluations) | set(losses)):
        logged = losses.get(iteration, {})
        rows.append({"iteration": iteration, "tokens": _tokens(run, iteration, keys.tokens_per_step),
                     LOG_VAL_LOSS: logged.get(LOG_VAL_LOSS), LOG_TEST_LOSS: logged.get(LOG_TEST_LOSS),
                     **{k: v for k, v in logged.items() if k not in FIXED_COLUMNS}, **evaluations.get(iteration, {})})
    return rows


def collect_results(jobs: Sequence[Job], keys: ResultKeys = ResultKeys()) -> ResultTable:
    runs = group_runs(jobs, keys.run_dir)
    param_columns = _describing_columns(runs, keys)
    metric_columns: dict[str, None] = {}
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for run in runs:
        for found in run_rows(run, keys, notes):
            metric_columns.update(dict.fromkeys(key for key in found if key not in FIXED_COLUMNS and key != RUN_COLUMN))
            rows.append({**{key: run.params.get(key) for key in param_columns}, **found, RUN_COLUMN: str(run.run_dir)})
    return ResultTable(param_columns, list(metric_columns), rows, notes)


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


def plot_validation_loss(table: ResultTable, path: str | Path | BinaryIO, keys: ResultKeys = ResultKeys(),
                         loss_column: str | None = None) -> int:
    """A loss column (default: `default_loss_column`) against training tokens; see `plot_columns`."""
    return plot_columns(table, path, [loss_column or default_loss_column(table.rows)], keys)


def plot_columns(table: ResultTable, path: str | Path | BinaryIO, columns: Sequence[str],
                 keys: ResultKeys = ResultKeys()) -> int:
    """One panel per column against training tokens, one line per run, one colour per value of the size key
    (`MODEL_SIZE`; e.g. `MIX` for a CPT campaign), pretrain solid / cooldown dashed.
    Returns the number of curves drawn (0: nothing to plot, no file written)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    use_tokens = any(row.get("tokens") is not None for row in table.rows)
    panels: list[dict[tuple[Any, ...], list[tuple[float, float]]]] = []
    for column in columns:
        curves: dict[tuple[Any, ...], list[tuple[float, float]]] = {}
        for row in table.rows:
            value = row.get(column)
            x = row["tokens"] if use_tokens else row["iteration"]
            if value is None or x is None or not math.isfinite(value):
                continue
            curves.setdefault(tuple(row.get(key) for key in table.param_columns), []).append((float(x), float(value)))
        panels.append(curves)
    if not any(panels):
        return 0
    sizes = list(dict.fromkeys(row.get(keys.model_size) for row in table.rows))
    colours = plt.get_cmap("viridis")
    size_position = table.param_columns.index(keys.model_size) if keys.model_size in table.param_columns else None
    phase_position = table.param_columns.index(keys.phase) if keys.phase in table.param_columns else None
    figure, all_axes = plt.subplots(1, len(columns), figsize=(8 * len(columns), 5), squeeze=False)
    for axes, column, curves in zip(all_axes[0], columns, panels):
        labelled: set[Any] = set()
        for run_key, points in curves.items():
            points.sort()
            size = run_key[size_position] if size_position is not None else None
            phase = str(run_key[phase_position]) if phase_position is not None else ""
            colour = colours(sizes.index(size) / max(1, len(sizes) - 1)) if size in sizes else "black"
            label = None
            if size not in labelled:  # one legend entry per model size
                labelled.add(size)
                label = f"{keys.model_size}={size}" if size is not None else "runs"
            style = "--" if phase.upper().startswith("COOL") else "-"
            axes.plot(*zip(*points), color=colour, linestyle=style, marker="o", markersize=3, alpha=0.8, label=label)
        if phase_position is not None and any(str(k[phase_position]).upper().startswith("COOL") for k in curves):
            axes.plot([], [], color="grey", linestyle="-", label="pretrain")
            axes.plot([], [], color="grey", linestyle="--", label="cooldown")
        axes.set_xlabel("training tokens" if use_tokens else "iteration")
        axes.set_ylabel(column)
        axes.set_xscale("log")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small")
    figure.tight_layout()
    if isinstance(path, (str, Path)):  # else a file object (the report draws into memory)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, format="png")
    plt.close(figure)
    return sum(len(curves) for curves in panels)
