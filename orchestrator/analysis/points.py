"""(N, D, L) points for a scaling-law fit, read from a CSV (what `orch results` writes, or any other)."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import UserError


@dataclass(frozen=True)
class Points:
    params: list[float]
    tokens: list[float]
    loss: list[float]
    lines: list[int]
    """The CSV line of each point, for messages."""
    skipped: int
    """Rows with an empty cell in one of the three columns (e.g. evaluation rows without a loss)."""
    roles: list[str] | None = None
    """Each point's `fit` cell (what `orch results` writes: run end, checkpoint, left out), None without one."""


# Where N is when no column is named: a column called params, the evaluator's `parameters` metric in
# what `orch results` writes, or a campaign's N_PARAMS key.
PARAMS_COLUMNS = ("params", "eval/parameters", "parameters", "N_PARAMS")
ROLE_COLUMN = "fit"  # analysis.campaign_points.FIT_COLUMN (that module needs the campaign layer; this one does not)


def csv_loss_column(path: str | Path) -> str:
    """The loss column `orch fit` reads from a CSV when none is named: as `default_loss_column` for what
    `orch results` writes, else a plain `val_loss` column (a CSV of the user's own)."""
    from orchestrator.campaign.results import LOG_VAL_LOSS, default_loss_column

    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            rows = [{k: (v or None) for k, v in row.items()} for row in reader]
            columns = reader.fieldnames or []
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None
    chosen = default_loss_column(rows)
    return chosen if chosen in columns or LOG_VAL_LOSS in columns else "val_loss"


def read_points(path: str | Path, params_col: str | None, tokens_col: str, loss_col: str) -> Points:
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            if params_col is None:
                params_col = next((column for column in PARAMS_COLUMNS if column in columns), PARAMS_COLUMNS[0])
            for option, column in (("--params-col", params_col), ("--tokens-col", tokens_col),
                                   ("--loss-col", loss_col)):
                if column not in columns:
                    raise UserError(f"{path}: no column {column!r} (columns: {', '.join(columns) or 'none'}); "
                                    f"name the right one with {option}")
            params, tokens, loss, lines, skipped = [], [], [], [], 0
            roles: list[str] | None = [] if ROLE_COLUMN in columns else None
            for line, row in enumerate(reader, start=2):
                cells = [row[params_col], row[tokens_col], row[loss_col]]
                if any(cell is None or not cell.strip() for cell in cells):
                    skipped += 1
                    continue
                values = []
                for column, cell in zip((params_col, tokens_col, loss_col), cells):
                    try:
                        value = float(cell)
                    except ValueError:
                        raise UserError(f"{path}:{line}: column {column!r} is {cell!r}, not a number") from None
                    if not (math.isfinite(value) and value > 0):
                        raise UserError(f"{path}:{line}: column {column!r} is {cell!r}; a scaling-law fit needs "
                                        "positive, finite values")
                    values.append(value)
                params.append(values[0])
                tokens.append(values[1])
                loss.append(values[2])
                lines.append(line)
                if roles is not None:
                    roles.append(row[ROLE_COLUMN] or "")
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None
    except csv.Error as error:
        raise UserError(f"{path}: not a readable CSV ({error})") from None
    return Points(params, tokens, loss, lines, skipped, roles)
