"""`orch plan CONFIG`: preview the expanded grid (dry run): a table, `--json`, or one script with `--show`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Collection, Sequence
from typing import Any

from orchestrator.accounting.estimate import JobEstimate
from orchestrator.cli.common import add_job_selection_arguments, selected_jobs
from orchestrator.cli.layout import WIDE, Column, fit_columns, left_out_note, output_width, plain_table, wrap_text
from orchestrator.errors import UserError
from orchestrator.jobs import Job

MAX_CELL = 48  # long commands are cut in the table; --json has them whole


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plan", help="preview the expanded jobs (nothing is written)")
    add_job_selection_arguments(parser)
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="every job's resolved parameters as JSON")
    output.add_argument("--show", metavar="NAME", help="print the rendered script of one job")
    parser.add_argument("--diff", action="store_true",
                        help="compare with what `orch build` last wrote here: new, removed and changed jobs, and "
                             "running jobs whose script changed under them (with --show NAME: the job's diff)")
    parser.add_argument("--wide", action="store_true", help="every column, whatever the terminal's width")
    parser.add_argument("--by", metavar="KEY[,KEY]", action="append", default=[],
                        help="GPU-hour subtotals by these parameters, crossed (repeatable; default: each swept "
                             "top-level key)")
    parser.set_defaults(handler=run_plan)


def _key_like(jobs: Sequence[Job], wanted: str) -> str | None:
    """The first parameter named like `wanted` (any case), e.g. MODE or mode."""
    for job in jobs[:1000]:
        for key in job.params:
            if key.lower() == wanted:
                return key
    return None


def _cut(text: str) -> str:
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _termination(job: Job) -> str:
    if job.termination_str:
        return f"output ~ /{job.termination_str}/"
    if job.termination_cmd:
        return f"cmd: {job.termination_cmd}"
    return "-"


def _watch(job: Job) -> str:
    """The monitor's progress and failure rules for a running job."""
    rules = ([f"progress ~ /{job.progress_regex}/"] if job.progress_regex else []) + (
        [f"fail ~ /{job.fail_regex}/"] if job.fail_regex else [])
    return "; ".join(rules) or "-"


def format_gpu_hours(estimate: JobEstimate) -> str:
    if estimate.gpus_unknown:
        return "?"
    if estimate.unbounded:
        return "unbounded"
    return f"{estimate.gpu_hours:.1f}" if estimate.gpus else "0"


def table_rows(jobs: Sequence[Job], estimates: dict[str, JobEstimate],
               predicted: Collection[str] = ()) -> tuple[list[str], list[list[str]]]:
    extra = [key for key in (_key_like(jobs, "mode"), _key_like(jobs, "phase")) if key]
    watched = any(job.progress_regex or job.fail_regex for job in jobs)
    computed = any(e.compute_hours is not None for e in estimates.values())
    header = ["NAME", *[key.upper() for key in extra], "GPU-H", *(["COMPUTE-H"] if computed else []), "SCRIPT",
              "OUTPUT", "START CONDITION", "TERMINATION", *(["WATCH"] if watched else [])]
    rows = [
        [
            job.name,
            *[str(job.params.get(key, "-")) for key in extra],
            "predicted" if job.name in predicted else format_gpu_hours(estimates[job.name]),
            *([_compute_cell(estimates[job.name])] if computed else []),
            job.sbatch_script,
            job.output_file,
            _cut(job.start_condition_cmd) or "-",
            _cut(_termination(job)),
            *([_cut(_watch(job))] if watched else []),
        ]
        for job in jobs
    ]
    return header, rows


def _compute_cell(estimate: JobEstimate) -> str:
    return f"{estimate.compute_hours:.1f}" if estimate.compute_hours is not None else "-"


# Which plan columns stay as the terminal narrows (lower first): the name and its cost always, then what
# tells jobs apart, how they end and start, and last the paths `--show` and `--json` give anyway.
_PLAN_PRIORITY = {"NAME": 0, "GPU-H": 0, "COMPUTE-H": 2, "TERMINATION": 3, "START CONDITION": 4, "WATCH": 5,
                  "SCRIPT": 6, "OUTPUT": 7}
_SHRINKING = ("START CONDITION", "TERMINATION", "WATCH", "SCRIPT", "OUTPUT")


def format_table(header: list[str], rows: list[list[str]], width: int = WIDE) -> str:
    columns = [Column(title, [row[index] for row in rows], priority=_PLAN_PRIORITY.get(title, 1),
                      wraps=title == "NAME", shrinks=title in _SHRINKING, min_width=20)
               for index, title in enumerate(header)]
    fitted = fit_columns(columns, width, gap=2)
    note = left_out_note(fitted, "`orch plan --wide` or --json shows them")
    return "\n".join(plain_table(fitted)) + "\n" + (wrap_text(note, width) + "\n" if note else "")


def _check_templates(jobs: Sequence[Job]) -> None:
    """Render the first job of each template: a missing or broken template fails the plan too."""
    from orchestrator.render import job_name_warnings, render_job

    firsts: dict[str, Job] = {}
    for job in jobs:
        firsts.setdefault(job.template, job)
    rendered = [(job, render_job(job)) for job in firsts.values()]
    for warning in job_name_warnings(rendered):
        print(f"orch: {warning}", file=sys.stderr)


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None), dict, list)) else str(value)


def estimates_with_compute(jobs: Sequence[Job]) -> dict[str, JobEstimate]:
    """Every job's estimate; the cluster's node definition asked only if some job needs it; the compute-based
    figure added where the config gives `estimate_tflops`."""
    import dataclasses

    from orchestrator.accounting.compute import TFLOPS_KEY, compute_gpu_hours
    from orchestrator.accounting.estimate import estimate_jobs
    from orchestrator.cli.common import cluster_node_gpus
    from orchestrator.render import render_job

    estimates = estimate_jobs(jobs)
    if any(e.gpus_unknown for e in estimates.values()):
        node_gpus = cluster_node_gpus()
        if node_gpus is not None:
            estimates = estimate_jobs(jobs, node_gpus)
    for job in jobs:
        if job.params.get(TFLOPS_KEY) not in (None, ""):
            hours = compute_gpu_hours(job, render_job(job))
            if hours is not None:
                estimates[job.name] = dataclasses.replace(estimates[job.name], compute_hours=hours)
    return estimates


def run_plan(args: argparse.Namespace) -> int:
    jobs = selected_jobs(args, warn_unused_keys=True)
    if args.diff:
        if args.json:
            raise UserError("--diff prints text; it does not combine with --json")
        from orchestrator.cli.plan_diff import print_diff

        return print_diff(args, jobs)
    if args.show:
        from orchestrator.render import render_job

        for job in jobs:
            if job.name == args.show:
                sys.stdout.write(render_job(job))
                return 0
        raise UserError(f"no job named {args.show!r} (see `orch plan {args.config}` for the names)")
    _check_templates(jobs)
    estimates = estimates_with_compute(jobs)
    from orchestrator.cli.predict_skip import predicted_jobs

    predicted = predicted_jobs(args.config, jobs)
    if args.json:
        from orchestrator.config import option_names

        options = option_names(args.config)
        payload = {"version": PLAN_JSON_VERSION, "jobs": [
            {**{key: _jsonable(value) for key, value in job.params.items()
                if not (key in options and isinstance(value, str) and value in job.params)},
             ESTIMATE_JSON_KEY: _estimate_json(estimates[job.name]),
             PREDICTED_JSON_KEY: _predicted_json(predicted.get(job.name))} for job in jobs]}
        json.dump(payload, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    header, rows = table_rows(jobs, estimates, predicted)
    width = output_width(args.wide)
    sys.stdout.write(format_table(header, rows, width))
    sys.stdout.write(f"{len(jobs)} jobs\n")
    # Predicted branches cost nothing: the totals and subtotals count the jobs that run.
    run_jobs = [job for job in jobs if job.name not in predicted]
    run_estimates = {job.name: estimates[job.name] for job in run_jobs}
    sys.stdout.write(wrap_text(cost_summary(args, run_jobs, run_estimates), width))
    if predicted:
        saved = sum(estimates[name].gpu_hours for name in predicted)
        branches = len({id(record) for record in predicted.values()})
        sys.stdout.write(wrap_text(
            f"predicted instead of run: {len(predicted)} job(s) of {branches} branch(es) (`orch predict --skip-within`), "
            f"{saved:,.1f} GPU-hours saved (not counted above); `orch run --retry-cancelled` runs them after all\n", width))
    return 0


ESTIMATE_JSON_KEY = "orch_estimate"
PREDICTED_JSON_KEY = "orch_predicted"
PLAN_JSON_VERSION = 1  # docs/json.md: what each version holds


def _estimate_json(estimate: JobEstimate) -> dict[str, Any]:
    return {"nodes": estimate.nodes, "gpus": None if estimate.gpus_unknown else estimate.gpus, "hours": estimate.hours,
            "gpu_hours": None if estimate.gpus_unknown else estimate.gpu_hours, "unbounded": estimate.unbounded,
            "compute_gpu_hours": estimate.compute_hours}


def _predicted_json(record) -> dict[str, Any] | None:
    """A branch predicted instead of run: its prediction (null for a job that runs)."""
    if record is None:
        return None
    return {"loss": record.loss, "low": record.low, "high": record.high, "law": record.law, "by": record.by}


def cost_summary(args: argparse.Namespace, jobs: Sequence[Job], estimates: dict[str, JobEstimate]) -> str:
    """The total, the unbounded jobs, and subtotals by the grid's main axes (or `--by`)."""
    from orchestrator.accounting.estimate import main_axis_subtotals, subtotals
    from orchestrator.config import load_config_file

    total = sum(e.gpu_hours for e in estimates.values())
    unbounded = [name for name, e in estimates.items() if e.unbounded]
    unknown = [name for name, e in estimates.items() if e.gpus_unknown]
    freeze = _short_freeze_line(jobs)
    if not any(e.gpus for e in estimates.values()) and not unknown:
        return "GPU-hours: none (no job asks for GPUs)\n" + freeze
    lines = [f"GPU-hours (each job's time limit x GPUs, one attempt each): {total:,.1f}"]
    if unknown:
        lines.append(f"  {len(unknown)} job(s) ask for nodes but name no GPUs and the cluster's node definition was "
                     f"not at hand (e.g. {unknown[0]}): GPU-hours unknown; `orch run` asks before submitting them "
                     "(set estimate_gpus or a GPU option to count them)")
    computed = [e.compute_hours for e in estimates.values() if e.compute_hours is not None]
    if computed:
        lines.append(f"  compute-based (training FLOPs at estimate_tflops), {len(computed)} job(s): "
                     f"{sum(computed):,.1f} GPU-hours")
    if unbounded:
        lines.append(f"  {len(unbounded)} job(s) with GPUs but no time limit (unbounded, not counted): "
                     + ", ".join(unbounded[:3]) + (" ..." if len(unbounded) > 3 else ""))
    problems = [(name, e.problem) for name, e in estimates.items() if e.problem]
    if problems:
        lines.append(f"  {len(problems)} job(s) with options that could not be read, e.g. {problems[0][0]}: "
                     f"{problems[0][1]}")
    if args.by:
        groupings = [[key.strip() for key in text.split(",") if key.strip()] for text in args.by]
        grouped = [(" × ".join(keys), subtotals(estimates, jobs, keys)) for keys in groupings]
    else:
        grouped = main_axis_subtotals(load_config_file(args.config)[0], estimates, jobs)
    for label, found in grouped:
        parts = [f"{sub.value} {sub.gpu_hours:,.1f}" + (f" (+{sub.unbounded} unbounded)" if sub.unbounded else "")
                 for sub in found]
        lines.append(f"  by {label}: " + ", ".join(parts))
    return "\n".join(lines) + "\n" + freeze


def _short_freeze_line(jobs: Sequence[Job]) -> str:
    """One warning line for freeze windows that would cancel healthy silent phases (checkpoint saves, index builds)."""
    from orchestrator.jobs import MIN_SENSIBLE_FREEZE_SECS

    short = [job for job in jobs if job.effective_freeze_secs < MIN_SENSIBLE_FREEZE_SECS]
    if not short:
        return ""
    return (f"warning: {len(short)} job(s) are cancelled as frozen after {short[0].effective_freeze_secs:g}s of "
            f"silence (e.g. {short[0].name}); Megatron saving a checkpoint or building its index is silent for longer: "
            f"set freeze_secs to {MIN_SENSIBLE_FREEZE_SECS:g} or more\n")
