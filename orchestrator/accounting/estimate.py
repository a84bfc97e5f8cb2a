"""GPU-hours a job may take: nodes x GPUs per node x time limit, read from its rendered script.

GPUs come from the options Slurm allocates them by: `--gpus/-G` (the job's total), `--gpus-per-node`,
`--gres=gpu[:type]:N` (per node), or `--gpus-per-task` x tasks; a `[type:]` prefix is skipped. Nodes
come from `--nodes/-N` (the maximum of a range `2-4`). Options on the `cmd` line (`sbatch -N 2 ...`)
win over the script's, as in sbatch. The config keys `estimate_gpus` (GPUs per job) and
`estimate_hours` override what the script says. A job without a time limit is *unbounded*: it counts
0 in totals and is flagged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from orchestrator.jobs import Job
from orchestrator.scheduler.base import NodeGpus
from orchestrator.scheduler.slurm_parse import gres_gpus
from orchestrator.scheduler.sbatch_script import directive_lines, options_from, parse_time_limit, sbatch_command_options

GPUS_KEY = "estimate_gpus"
HOURS_KEY = "estimate_hours"


@dataclass(frozen=True)
class JobEstimate:
    """What one attempt of a job may take (shared by all jobs with the same figures)."""

    nodes: int
    gpus: int
    """GPUs allocated to the job in all (over all its nodes)."""
    hours: float | None
    """The time limit of one attempt; None: no limit (unbounded)."""
    problem: str = ""
    """Why the script's options could not be read (then gpus/hours fall back to 0/None)."""
    partition: str = ""
    gpus_unknown: bool = False
    """It asks for nodes but names no GPUs, and the cluster's node definition was not at hand: its GPU-hours
    are not known (the confirmation asks, a budget holds it)."""
    compute_hours: float | None = None
    """GPU-hours from the FLOPs it trains and `estimate_tflops` (see `accounting.compute`); None: not known."""

    @property
    def gpu_hours(self) -> float:
        return self.gpus * self.hours if self.hours is not None else 0.0

    @property
    def unbounded(self) -> bool:
        return self.hours is None and self.gpus > 0


def _count(text: str) -> int:
    """`4`, `a100:4` -> 4 (a GPU type prefix is skipped)."""
    return int(text.rsplit(":", 1)[-1])


def _max_nodes(text: str) -> int:
    """`2`, `2-4` (min-max) or `1,2,4` (allowed sizes) -> the most nodes the job may get."""
    return max(int(part) for part in re.split(r"[-,]", text) if part)


def _gpus(options: Mapping[str, str], nodes: int) -> int:
    if "gpus" in options:
        return _count(options["gpus"])
    if "gpus-per-node" in options:
        return nodes * _count(options["gpus-per-node"])
    if "gres" in options:
        return nodes * gres_gpus(options["gres"])
    if "gpus-per-task" in options:
        tasks = int(options["ntasks"]) if "ntasks" in options else nodes * int(options.get("ntasks-per-node", 1))
        return tasks * _count(options["gpus-per-task"])
    return 0


def _number(value: Any, key: str, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"job {name}: {key} must be a number, got {value!r}") from None


def _command_options(cmd: str, sbatch_script: str) -> tuple[str, ...]:
    if " -" not in cmd:
        return ()  # `sbatch SCRIPT`: nothing to read (and no shell parse, no cache entry per job)
    return _parsed_command_options(cmd, sbatch_script)


@lru_cache(maxsize=1024)
def _parsed_command_options(cmd: str, sbatch_script: str) -> tuple[str, ...]:
    return tuple(sbatch_command_options(cmd.replace("{sbatch_script}", sbatch_script), sbatch_script))


def estimate_job(job: Job, script_text: str, node_gpus: NodeGpus | None = None) -> JobEstimate:
    """The job's estimate from its rendered script (and the overriding config keys).

    A job that asks for nodes and names no GPUs gets the GPUs of its partition's nodes (sites that allocate
    whole nodes charge them all) from `node_gpus`; without it its GPUs are unknown."""
    nodes, gpus, hours, problem, partition, bare_nodes = _from_options(
        directive_lines(script_text, resources_only=True), _command_options(job.cmd, job.sbatch_script))
    params = job.params
    unknown = False
    if params.get(GPUS_KEY) is not None:  # the config knows better (e.g. a cluster's default GPUs per node)
        gpus = int(_number(params[GPUS_KEY], GPUS_KEY, job.name))
    elif bare_nodes:
        per_node = node_gpus.of(partition) if node_gpus is not None else None
        gpus, unknown = (nodes * per_node, False) if per_node is not None else (0, True)
    if params.get(HOURS_KEY) is not None:
        hours = _number(params[HOURS_KEY], HOURS_KEY, job.name)
    return JobEstimate(nodes, gpus, hours, problem, partition, unknown)


@lru_cache(maxsize=4096)
def _from_options(lines: tuple[str, ...], command_line: tuple[str, ...]) -> tuple[int, int, float | None, str, str, bool]:
    """(nodes, GPUs, hours, problem, partition, asks for nodes without naming GPUs) from the resource
    directives; most jobs of a grid share them."""
    options = options_from(lines, command_line)
    problem = ""
    try:
        nodes = _max_nodes(options["nodes"]) if "nodes" in options else 1
        gpus = _gpus(options, nodes)
    except ValueError:
        nodes, gpus, problem = 1, 0, "unreadable GPU or node options"
    try:
        seconds = parse_time_limit(options.get("time", ""))
    except ValueError as error:
        seconds, problem = None, f"--time: {error}"
    hours = seconds / 3600 if seconds is not None else None
    bare_nodes = "nodes" in options and not gpus and not problem
    return nodes, gpus, hours, problem, options.get("partition", ""), bare_nodes


@dataclass(frozen=True)
class Subtotal:
    value: str
    jobs: int
    gpu_hours: float
    unbounded: int


def _axis_values(jobs: Sequence[Job], keys: Sequence[str]) -> tuple[list[Any], Counter[Any]]:
    try:
        if len(keys) == 1:
            key = keys[0]
            values: list[Any] = [(job.params.get(key, "-"),) for job in jobs]
        else:
            values = [tuple(job.params.get(key, "-") for key in keys) for job in jobs]
        return values, Counter(values)
    except TypeError:  # a list value: group by its text
        values = [tuple(repr(job.params.get(key, "-")) for key in keys) for job in jobs]
        return values, Counter(values)


def _per_job(estimates: Mapping[str, JobEstimate], jobs: Sequence[Job]) -> tuple[list[float], list[bool]]:
    """Each job's GPU-hours and whether it is unbounded, in job order (computed once for all axes)."""
    figures = [estimates[job.name] for job in jobs]
    return [e.gpu_hours for e in figures], [e.unbounded for e in figures]


def _subtotals(values: list[Any], counts: Counter[Any], per_job: tuple[list[float], list[bool]]) -> list[Subtotal]:
    hours: dict[Any, float] = dict.fromkeys(counts, 0.0)
    unbounded: Counter[Any] = Counter()
    for value, job_hours, job_unbounded in zip(values, *per_job):
        hours[value] += job_hours
        if job_unbounded:
            unbounded[value] += 1
    return [Subtotal(" × ".join(str(part) for part in value), count, hours[value], unbounded[value])
            for value, count in counts.items()]


def subtotals(estimates: Mapping[str, JobEstimate], jobs: Sequence[Job], keys: Sequence[str]) -> list[Subtotal]:
    """GPU-hours per value of some grid axes (parameters; several are crossed), in order of first appearance."""
    values, counts = _axis_values(jobs, keys)
    return _subtotals(values, counts, _per_job(estimates, jobs))


def main_axis_subtotals(config: Mapping[str, Any], estimates: Mapping[str, JobEstimate], jobs: Sequence[Job],
                        most_values: int = 30) -> list[tuple[str, list[Subtotal]]]:
    """Subtotals by each of the grid's main axes: top-level keys swept over 2..most_values values here."""
    per_job = _per_job(estimates, jobs)
    found = []
    for key, value in config.items():
        if isinstance(value, list):
            values, counts = _axis_values(jobs, [str(key)])
            if 2 <= len(counts) <= most_values:
                found.append((str(key), _subtotals(values, counts, per_job)))
    return found


def estimate_jobs(jobs: Sequence[Job], node_gpus: NodeGpus | None = None) -> dict[str, JobEstimate]:
    """Every job's estimate, from the directive part of its rendered script.

    Jobs whose resource directives render from the same values get the same figures, so a script is
    rendered once per distinct combination of those values (`render.resource_fields`), not per job.
    """
    from orchestrator.render import render_directives, resource_fields

    estimates: dict[str, JobEstimate] = {}
    known: dict[Any, JobEstimate] = {}
    fields_of: dict[str, tuple[str, ...] | None] = {}
    for job in jobs:
        if job.template in fields_of:
            fields = fields_of[job.template]
        else:
            fields = fields_of[job.template] = resource_fields(job.template)
        key = None
        if fields is not None:
            get = job.params.get
            key = (job.template, tuple(get(field) for field in fields) if fields else (),
                   _command_options(job.cmd, job.sbatch_script), get(GPUS_KEY), get(HOURS_KEY))
            try:
                figures = known.get(key)
            except TypeError:  # an unhashable (list) value: no sharing
                figures, key = None, None
            if figures is not None:
                estimates[job.name] = figures
                continue
        estimate = estimate_job(job, render_directives(job), node_gpus)
        if key is not None:
            known[key] = estimate
        estimates[job.name] = estimate
    return estimates
