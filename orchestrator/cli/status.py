"""`orch status CONFIG [--json]`: what the monitor's store says about each job of the campaign.

Read-only: it works while a monitor runs (SQLite WAL lets readers in) and when none ever ran
(every job is then `waiting`).
"""

from __future__ import annotations

import argparse
import json
import os
import time

from orchestrator.cli.common import add_job_selection_arguments, selected_jobs

TAIL_BYTES = 4096


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("status", help="each job's state, scheduler id, attempts, runtime and last output line")
    add_job_selection_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.set_defaults(handler=handle_status)


def status_rows(jobs, store, now: float) -> list[dict]:
    from orchestrator.monitor.probes import resolve_output_path

    records = store.jobs([job.name for job in jobs]) if store is not None else {}
    attempts_by_job: dict[str, list] = {}
    if store is not None:
        for attempt in store.attempts():
            attempts_by_job.setdefault(attempt.job, []).append(attempt)
    rows = []
    for job in jobs:
        record = records.get(job.name)
        attempts = [a for a in attempts_by_job.get(job.name, []) if a.scheduler_id]
        until = record.updated_at if record and record.state.is_terminal else now  # a finished job's clock stops
        runtime = sum(min(a.ended_at or until, until) - a.started_at for a in attempts if a.started_at is not None)
        rows.append({
            "name": job.name,
            "state": record.state.value if record else "waiting",
            "scheduler_id": attempts[-1].scheduler_id if attempts else None,
            "attempts": len(attempts),
            "runtime_secs": round(runtime, 1),
            "last_line": last_line(resolve_output_path(job.output_file, record.last_scheduler_id if record else None,
                                                        job.name)),
            "reason": record.reason if record else "",
        })
    return rows


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


def handle_status(args: argparse.Namespace) -> int:
    from orchestrator.state import StateStore

    jobs = selected_jobs(args)
    store = StateStore.open_existing(".")
    try:
        rows = status_rows(jobs, store, time.time())
    finally:
        if store is not None:
            store.close()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{args.config}: {len(rows)} jobs" + ("" if store else " (no monitor has run here yet)"))
    # Names are what users grep for: never cut them; the output line gives way instead.
    table.add_column("name", no_wrap=True, min_width=min(60, max((len(r["name"]) for r in rows), default=4)))
    id_width = max((len(r["scheduler_id"] or "-") for r in rows), default=2)
    for column, width in (("state", 9), ("id", max(2, id_width)), ("tries", 5), ("runtime", 7)):
        table.add_column(column, no_wrap=True, min_width=width)
    table.add_column("last output line", no_wrap=True, overflow="ellipsis")
    colours = {"done": "green", "failed": "red", "abandoned": "yellow", "running": "cyan"}
    for row in rows:
        state = row["state"]
        table.add_row(row["name"], f"[{colours.get(state, 'default')}]{state}[/]", row["scheduler_id"] or "-",
                      str(row["attempts"]), format_runtime(row["runtime_secs"]), row["last_line"][-80:])
    Console().print(table)
    return 0
