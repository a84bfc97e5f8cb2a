"""`orch results CONFIG`: every run's eval results and validation losses in one table (CSV + console).

Run folders come from each job's `RUN_DIR` parameter (`--run-dir-key`); see orchestrator.campaign.results.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import UserError
from orchestrator.cli.common import add_job_selection_arguments, require_matplotlib, selected_jobs

if TYPE_CHECKING:
    from orchestrator.campaign.results import ResultTable

DEFAULT_MAX_ROWS = 100


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("results", help="collect eval results and validation losses of a campaign")
    add_job_selection_arguments(parser)
    parser.add_argument("--csv", metavar="PATH", help="CSV to write (default: <config name>_results.csv)")
    parser.add_argument("--plot", metavar="PNG", help="plot the loss (eval/val_loss where the campaign has an evaluator's,"
                        " else log_val_loss) against training tokens per model size")
    parser.add_argument(
        "--plot-columns", metavar="COL,COL", type=lambda text: [c for c in text.split(",") if c],
        help="with --plot: one panel per column instead of the loss, e.g. eval/loss_d0,eval/loss_new "
             "(forgetting and learning of a CPT campaign)")
    parser.add_argument(
        "--run-dir-key", default="RUN_DIR", help="parameter holding a job's run folder (default: %(default)s)"
    )
    parser.add_argument(
        "--tokens-key", default="TOKENS_PER_STEP", help="parameter holding tokens per iteration (default: %(default)s)"
    )
    parser.add_argument("--size-key", default="MODEL_SIZE", help="parameter naming model sizes (default: %(default)s)")
    parser.add_argument("--phase-key", default="PHASE", help="parameter naming the phase (default: %(default)s)")
    parser.add_argument(
        "--params", metavar="KEY,KEY", type=lambda text: [k for k in text.split(",") if k],
        help="parameter columns shown on the console (default: every parameter that varies; the CSV has all)",
    )
    parser.add_argument("--wide", action="store_true", help="every column on the console, whatever its width")
    parser.add_argument(
        "--max-rows", type=int, default=DEFAULT_MAX_ROWS,
        help="rows shown on the console; the CSV has all (default: %(default)s)",
    )
    parser.set_defaults(handler=run_results)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _print_table(table: ResultTable, max_rows: int, params: list[str] | None, width: int) -> None:
    """The console table, fitted to `width`: the parameters that tell runs apart, the iteration and the losses
    stay; tokens and the other metrics join while they fit (the CSV has every column)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from orchestrator.campaign.results import FIXED_COLUMNS
    from orchestrator.cli.layout import Column, fit_columns, wrap_name, wrap_text

    metrics = [column for column in table.metric_columns if "stderr" not in column]
    metrics = sorted(metrics, key=lambda column: "loss" not in column)[:8]  # losses first, else in file order
    shown_params = [key for key in params if key in table.param_columns] if params else table.param_columns
    logged = [column for column in FIXED_COLUMNS[2:] if any(row.get(column) is not None for row in table.rows)]
    rows = table.rows[:max_rows]

    def priority(column: str) -> int:
        if column == "iteration" or column in shown_params[:3] or ("loss" in column and column in (*logged, *metrics[:1])):
            return 0
        if column in shown_params or "loss" in column:
            return 1
        return 2 if column == "tokens" else 3

    names = [*shown_params, "iteration", "tokens", *logged, *metrics]
    fitted = fit_columns([Column(name, [_cell(row.get(name)) for row in rows], priority(name),
                                 wraps=name in shown_params) for name in names], width - 1, gap=3)
    view = Table(show_lines=False, header_style="bold")
    for column, size in zip(fitted.columns, fitted.widths):
        view.add_column(column.header, width=size, overflow="fold")
    for index in range(len(rows)):
        view.add_row(*(Text("\n".join(wrap_name(column.cells[index], size)) if column.wraps else column.cells[index])
                       for column, size in zip(fitted.columns, fitted.widths)))
    console = Console(width=width)
    console.print(view)
    notes = ([f"({len(table.rows) - max_rows} more rows in the CSV)"] if len(table.rows) > max_rows else []) + (
        [f"({len(fitted.left_out)} column(s) left out at this width: {', '.join(fitted.left_out)}; the CSV has them, "
         "--wide shows them)"] if fitted.left_out else [])
    for note in notes:
        print(wrap_text(note, width))


def add_fit_roles(table: ResultTable, jobs, keys) -> None:
    """The `fit` column: each row's role in `orch fit` (a finished run's end, annealed or not, an earlier
    checkpoint, or why its run is left out), so `orch fit CSV` selects what `orch fit CONFIG` does."""
    from orchestrator.analysis.campaign_points import FIT_COLUMN, judge_runs
    from orchestrator.campaign.results import RUN_COLUMN

    rows_by_run: dict[str, list[dict]] = {}
    for row in table.rows:  # the rows already read: each run's logs and results are read once
        rows_by_run.setdefault(row[RUN_COLUMN], []).append(row)
    verdicts, _ = judge_runs(jobs, keys, rows_by_run=rows_by_run)
    roles = {(str(v.run.run_dir), row["iteration"]): v.role(index) for v in verdicts for index, row in enumerate(v.rows)}
    for row in table.rows:
        row[FIT_COLUMN] = roles.get((row[RUN_COLUMN], row["iteration"]), "")
    table.extra_columns.append(FIT_COLUMN)


def run_results(args: argparse.Namespace) -> int:
    from orchestrator.campaign.results import ResultKeys, collect_results, plot_columns, plot_validation_loss, write_csv

    if args.plot:
        require_matplotlib()
    keys = ResultKeys(args.run_dir_key, args.tokens_key, args.size_key, args.phase_key)
    jobs = selected_jobs(args)
    table = collect_results(jobs, keys)
    add_fit_roles(table, jobs, keys)
    for note in table.notes:
        print(f"note: {note}", file=sys.stderr)
    csv_path = args.csv or f"{Path(args.config).stem}_results.csv"
    write_csv(table, csv_path)
    if table.rows:
        from orchestrator.cli.layout import output_width

        _print_table(table, args.max_rows, args.params, output_width(args.wide))
    print(f"{len(table.rows)} result row(s) written to {csv_path}")
    if args.plot:
        if args.plot_columns:
            unknown = [c for c in args.plot_columns if c not in table.columns]
            if unknown:
                raise UserError(f"--plot-columns: no column {unknown[0]!r} (columns: {', '.join(table.columns)})")
            curves = plot_columns(table, args.plot, args.plot_columns, keys)
        else:
            curves = plot_validation_loss(table, args.plot, keys)
        if curves:
            print(f"plotted {curves} curve(s) to {args.plot}")
        else:
            print("no losses to plot; no figure written")
    return 0
