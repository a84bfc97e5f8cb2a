"""`orch status CONFIG [--json] [--history NAME] [--watch]`: what the monitor's store says about each job.

Read-only: it works while a monitor runs (it reads the snapshot the monitor writes) and when none ever ran (every job
is then `waiting`). Beside each job's state: the GPU-hours it spent (the scheduler's elapsed time x
allocated GPUs, every attempt), the part of it wasted on attempts that did not finish, and the
estimate of what it may still take.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from typing import Any

from orchestrator.cli.common import add_job_selection_arguments, campaign_state_dir, selected_jobs
from orchestrator.errors import UserError

TAIL_BYTES = 4096
LONG_WAIT_CHECKS = 10  # a start condition refused this often: "waiting longer than usual"


STATUS_JSON_VERSION = 1  # docs/json.md


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("status", help="each job's state, scheduler id, attempts, GPU-hours and last output")
    add_job_selection_arguments(parser)
    view = parser.add_mutually_exclusive_group()
    view.add_argument("--json", action="store_true", help="print JSON (jobs and totals) instead of a table")
    view.add_argument("--history", metavar="NAME", help="one job's attempts with what each was submitted with")
    view.add_argument("--watch", action="store_true", help="refresh in place until interrupted")
    parser.add_argument("--interval", type=float, default=5.0, metavar="SECS", help="--watch refresh period")
    parser.add_argument("--budget", type=float, metavar="GPU_HOURS", help="show spending against this budget")
    parser.add_argument("--wide", action="store_true", help="every column, whatever the terminal's width")
    parser.set_defaults(handler=handle_status)


def status_rows(jobs, store, now: float) -> list[dict[str, Any]]:
    from orchestrator.accounting.estimate import estimate_jobs
    from orchestrator.accounting.ledger import attempt_seconds, job_spend, remaining_gpu_hours
    from orchestrator.job_state import JobState
    from orchestrator.monitor.probes import resolve_output_path

    records = store.jobs([job.name for job in jobs]) if store is not None else {}
    attempts_by_job: dict[str, list] = {}
    if store is not None:
        for attempt in store.attempts():
            attempts_by_job.setdefault(attempt.job, []).append(attempt)
    estimates = estimate_jobs(jobs)
    rows = []
    for job in jobs:
        record = records.get(job.name)
        attempts = [a for a in attempts_by_job.get(job.name, []) if a.scheduler_id]
        spend = job_spend(attempts, now)
        state = record.state.value if record else "waiting"
        done = record is not None and record.state in (JobState.DONE, JobState.CANCELLED)  # nothing more to spend
        open_attempt = next((a for a in attempts if a.ended_at is None and not a.standby), None)
        standby = next((a for a in attempts if a.ended_at is None and a.standby), None)
        submitted = [a for a in attempts if not a.standby]  # pre-queued ones count once promoted
        rows.append({
            "name": job.name,
            "state": state,
            "scheduler_id": submitted[-1].scheduler_id if submitted else None,
            "prequeued": standby.scheduler_id if standby else None,
            "attempts": len(attempts),
            "runtime_secs": round(sum(attempt_seconds(a, now) for a in attempts), 1),
            "gpu_hours_spent": round(spend.spent, 4),
            "gpu_hours_wasted": round(spend.wasted, 4),
            "gpu_hours_remaining": 0.0 if done else round(remaining_gpu_hours(estimates[job.name], open_attempt, now), 4),
            "unbounded": estimates[job.name].unbounded and not done,
            "last_line": last_line(resolve_output_path(job.output_file, record.last_scheduler_id if record else None,
                                                        job.name)),
            "reason": record.reason if record else "",
            "needs_attention": _attention(record, attempts),
        })
    return rows


def _attention(record, attempts) -> str:
    """Why a job needs a look: it failed or was abandoned, froze, or waits unusually long to start."""
    if record is None:
        return ""
    if record.state.value in ("failed", "abandoned", "cancelled"):
        return record.state.value  # attention_lines adds the reason: for a cancel, who cancelled it and when
    if attempts and attempts[-1].cancel_reason and record.state.value != "done":
        return attempts[-1].cancel_reason
    if record.state.value == "waiting" and record.start_attempts >= LONG_WAIT_CHECKS:
        return f"waiting ({record.start_attempts} start checks)"
    if record.reason.startswith("budget:"):
        return "over budget"
    return ""


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "jobs": len(rows),
        "states": dict(Counter(row["state"] for row in rows)),
        "gpu_hours_spent": round(sum(row["gpu_hours_spent"] for row in rows), 4),
        "gpu_hours_wasted": round(sum(row["gpu_hours_wasted"] for row in rows), 4),
        "gpu_hours_remaining": round(sum(row["gpu_hours_remaining"] for row in rows), 4),
        "unbounded_jobs": sum(1 for row in rows if row["unbounded"]),
    }


def last_line(path: str | None) -> str:
    """The last non-empty line of a (possibly huge) log, read from its end."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - TAIL_BYTES))
            tail = handle.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line for line in tail.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def format_runtime(secs: float) -> str:
    if secs <= 0:
        return "-"
    hours, rest = divmod(int(secs), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def format_gpu_hours(value: float) -> str:
    return "-" if value <= 0 else (f"{value:,.1f}" if value >= 0.1 else f"{value:.3f}")


def summary_line(total: dict[str, Any], budget: float | None) -> str:
    states = ", ".join(f"{count} {state}" for state, count in sorted(total["states"].items()))
    line = (f"{total['jobs']} jobs: {states}. GPU-hours spent {total['gpu_hours_spent']:,.1f} "
            f"(wasted {total['gpu_hours_wasted']:,.1f}), still to come up to {total['gpu_hours_remaining']:,.1f}")
    if total["unbounded_jobs"]:
        line += f" + {total['unbounded_jobs']} unbounded"
    if budget is not None:
        left = budget - total["gpu_hours_spent"]
        line += f"; budget {budget:,.1f}, {left:,.1f} left"
    return line


def status_table(title: str, rows: list[dict[str, Any]], width: int, left_out: list[str] | None = None):
    """The table, fitted to `width` columns: name, state and id always; names wrap at word parts, never
    mid-word; the last output line is cut; tries, runtime and GPU-h stay while they fit (the headers of those
    that do not are appended to `left_out`). The widths are computed here, not by rich's shrinking."""
    from rich.table import Table
    from rich.text import Text

    from orchestrator.cli.layout import Column, fit_columns, wrap_name

    cells = {
        "name": [r["name"] for r in rows],
        "state": [r["state"] for r in rows],
        "id": [r["scheduler_id"] or "-" for r in rows],
        "tries": [str(r["attempts"]) for r in rows],
        "runtime": [format_runtime(r["runtime_secs"]) for r in rows],
        "GPU-h": [format_gpu_hours(r["gpu_hours_spent"]) for r in rows],
        "last output line": [r["last_line"][-200:] for r in rows],
    }
    priority = {"name": 0, "state": 0, "id": 0, "last output line": 1, "tries": 2, "runtime": 3, "GPU-h": 4}
    columns = [Column(header, values, priority[header], wraps=header == "name", shrinks=header == "last output line",
                      min_width=16) for header, values in cells.items()]
    fitted = fit_columns(columns, width - 1, gap=3)  # "│ " + " " around each cell, one closing rule
    if left_out is not None:
        left_out.extend(fitted.left_out)
    table = Table(title=title or None, title_justify="left")
    for column, size in zip(fitted.columns, fitted.widths):
        table.add_column(column.header, width=size, no_wrap=True, overflow="ellipsis",
                         justify="right" if column.header in ("tries", "GPU-h") else "left")
    colours = {"done": "green", "failed": "red", "abandoned": "yellow", "cancelled": "magenta", "running": "cyan"}
    for index in range(len(rows)):
        shown = []
        for column, size in zip(fitted.columns, fitted.widths):
            value = column.cells[index]
            # Job names and log lines are text, never markup: `[after training is done]` must show as it is.
            if column.header == "name":
                shown.append(Text("\n".join(wrap_name(value, size))))
            else:
                shown.append(Text(value, style=colours.get(value, "") if column.header == "state" else ""))
        table.add_row(*shown)
    return table


def attention_lines(rows: list[dict[str, Any]], limit: int = 10) -> list[str]:
    flagged = [row for row in rows if row["needs_attention"]]
    lines = [f"  {row['name']}: {row['needs_attention']}" + (f" ({row['reason']})" if row["reason"] else "")
             for row in flagged[:limit]]
    if len(flagged) > limit:
        lines.append(f"  ... and {len(flagged) - limit} more")
    return (["needs attention:"] + lines) if lines else []


def _collect(jobs, directory) -> tuple[list[dict[str, Any]], str]:
    """The rows, and where the campaign is: "no monitor has run here yet", or the backend it was submitted to,
    and where its monitor runs now."""
    from orchestrator.state import StateStore

    store = StateStore.open_existing(directory)
    try:
        rows = status_rows(jobs, store, time.time())
        backend = store.campaign_value("scheduler") if store is not None else None
        written = store.snapshot_time() if store is not None else None
        chain = (store.campaign_value("monitor_job") or "", store.campaign_value("monitor_generation") or "") \
            if store is not None else ("", "")
    finally:
        if store is not None:
            store.close()
    where = " (no monitor has run here yet)" if store is None else f" on {backend}" if backend else ""
    age = f"; state last changed {max(0.0, time.time() - written):.0f}s ago" if written is not None else ""
    return rows, where + age + monitor_line(directory, *chain)


def monitor_line(directory, monitor_job: str = "", generation: str = "") -> str:
    """Where the campaign's monitor runs, from its lease: host (Slurm job), pid and heartbeat age; for a monitor
    job (`orch run --as-slurm-job`), which generation of it."""
    from orchestrator.state.lease import LEASE_NAME, read_holder

    holder = read_holder(directory / LEASE_NAME)
    if holder is not None:
        chained = f", monitor job generation {generation}" if holder.slurm_job and generation else ""
        return f"; monitor: {holder.describe(time.time())}{chained}"
    if monitor_job:
        return (f"; no monitor running this moment (the monitor job's generation {generation}, Slurm job "
                f"{monitor_job}, ended: Slurm starts the next one it queued)")
    return "; no monitor running"


def _render(args: argparse.Namespace, rows: list[dict[str, Any]], where: str, width: int, shown: int | None = None,
            attention_limit: int = 10):
    """The table of the first `shown` rows (all by default), then the totals and attention lines of all rows."""
    from rich.console import Group
    from rich.text import Text

    title = f"{args.config}: {len(rows)} jobs{where}"
    total = totals(rows)
    visible = rows if shown is None else rows[:shown]
    left_out: list[str] = []
    table = status_table("", visible, width, left_out)  # the title above it: a table wraps its own to its width
    notes = []
    if len(visible) < len(rows):
        notes.append(f"... {len(rows) - len(visible)} more job(s) below this terminal's height (`orch status` lists all)")
    if left_out:
        notes.append(f"({', '.join(left_out)} left out at this width: --wide or --json shows them)")
    return Group(Text(title), table, *[Text(note) for note in notes], Text(summary_line(total, args.budget)),
                 *[Text(line) for line in attention_lines(rows, attention_limit)])


_WATCH_ORDER = {"running": 0, "queued": 1, "failed": 2, "abandoned": 3, "waiting": 4, "cancelled": 5, "done": 6}


def _render_to_fit(console, args: argparse.Namespace, rows: list[dict[str, Any]], where: str, width: int):
    """For --watch: as many rows as the terminal's height holds (those needing attention, then running, queued,
    ... done last), and always the totals and the attention lines, which a taller table would push off screen."""
    ordered = sorted(rows, key=lambda r: (not r["needs_attention"], _WATCH_ORDER.get(r["state"], 7)))
    height = console.size.height
    limit = max(1, min(10, height // 4))
    options = console.options.update(width=width)

    def fits(count: int) -> bool:
        return len(console.render_lines(_render(args, ordered, where, width, count, limit), options, pad=False)) < height

    low, high = 0, len(ordered)  # the largest count that fits, by bisection (each try renders the table)
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return _render(args, ordered, where, width, low, limit)


def _print_bad_nodes(directory) -> None:
    """The nodes the campaign's submissions exclude (with `orch run`'s default bounds), when there are any."""
    from orchestrator.cli.nodes import describe_bad_nodes
    from orchestrator.state.bad_nodes import read_bad_nodes

    text = describe_bad_nodes(read_bad_nodes(directory), time.time())
    if text:
        print(text)


def handle_status(args: argparse.Namespace) -> int:
    jobs = selected_jobs(args)
    if args.history:
        return print_history(args, jobs)
    directory = campaign_state_dir(args.config, jobs)
    rows, where = _collect(jobs, directory)
    if args.json:
        print(json.dumps({"version": STATUS_JSON_VERSION, "jobs": rows, "totals": totals(rows)}, indent=2))
        return 0
    from rich.console import Console

    from orchestrator.cli.layout import output_width

    width = output_width(args.wide)  # a terminal's width; unlimited for a pipe or a file without COLUMNS
    console = Console(width=width)
    if not args.watch:
        console.print(_render(args, rows, where, width))
        _print_bad_nodes(directory)
        return 0
    from rich.live import Live

    with Live(_render_to_fit(console, args, rows, where, width), console=console, auto_refresh=False,
              screen=False) as live:
        try:
            while True:
                time.sleep(max(0.2, args.interval))
                rows, where = _collect(jobs, directory)
                live.update(_render_to_fit(console, args, rows, where, width), refresh=True)
        except KeyboardInterrupt:
            return 0


def print_history(args: argparse.Namespace, jobs) -> int:
    """One job's attempts, oldest first, each with its ending, spend and provenance."""
    from orchestrator.accounting.ledger import attempt_gpu_hours, attempt_seconds
    from orchestrator.state import StateStore

    if not any(job.name == args.history for job in jobs):
        raise UserError(f"no job named {args.history!r} in {args.config}")
    store = StateStore.open_existing(campaign_state_dir(args.config, jobs))
    if store is None:
        print(f"{args.history}: never submitted (no monitor has run for {args.config})")
        return 0
    try:
        attempts = store.attempts(args.history)
    finally:
        store.close()
    now = time.time()
    print(f"{args.history}: {len(attempts)} attempt(s)")
    for number, attempt in enumerate(attempts, 1):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(attempt.intent_at))
        ending = attempt.final_state or ("running" if attempt.scheduler_id else "intent (no id yet)")
        if attempt.after_id and attempt.final_state is None and attempt.standby:
            ending = f"pre-queued behind {attempt.after_id}" + ("" if attempt.scheduler_id else ", intent (no id yet)")
        elif attempt.after_id:
            ending += f" (pre-queued behind {attempt.after_id})"
        if attempt.cancel_reason:
            ending += f", cancelled by orch: {attempt.cancel_reason}"
        print(f"#{number} {attempt.scheduler_id or '-'} submitted {when}: {ending}"
              + (f" (exit {attempt.exit_code})" if attempt.exit_code not in (None, 0) else "")
              + f"; ran {format_runtime(attempt_seconds(attempt, now))}, "
              f"{attempt_gpu_hours(attempt, now):.3f} GPU-hours")
        for key, value in (attempt.provenance or {}).items():
            if value not in (None, [], ""):
                print(f"    {key}: {value}")
    return 0
