"""Pieces shared by CLI commands: job selection (build, plan, run, status, ...), the optional extras, argument types."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import UserError
from orchestrator.jobs import Job

if TYPE_CHECKING:
    from orchestrator.scheduler.base import NodeGpus, Scheduler


def add_job_selection_arguments(parser: argparse.ArgumentParser, command_help: str | None = None,
                                config_help: str | None = None) -> None:
    """CONFIG, AutoExperiment's `-f KEY=VALUE` fixes and positional `KEY=V1,V2` filters.

    With `command_help`, a positional CMD (a shell command formatted per job) comes right after CONFIG. With
    `config_help`, CONFIG is optional (a command that also works without a campaign) and described so.
    """
    if config_help:
        parser.add_argument("config", metavar="CONFIG", nargs="?", help=config_help)
    else:
        parser.add_argument("config", metavar="CONFIG", help="campaign YAML file")
    if command_help:
        parser.add_argument("command", metavar="CMD", help=command_help)
    parser.add_argument(
        "filters", metavar="KEY=V1,V2", nargs="*", default=[], help="keep only jobs whose KEY is one of the values"
    )
    parser.add_argument(
        "-f", "--fix", dest="fixes", metavar="KEY=VALUE", action="append", default=[],
        help="fix a value before expansion, kept as text like AutoExperiment (repeatable)",
    )
    parser.add_argument(
        "-F", "--fix-typed", dest="typed_fixes", metavar="KEY=VALUE", action="append", default=[],
        help="like -f, but the value is typed as YAML would type it (1e-3 is a number)",
    )


def selected_jobs(args: argparse.Namespace, warn_unused_keys: bool = False) -> list[Job]:
    """The config's jobs after fixes and filters. A key that nearly spells an orch key and that nothing reads
    is an error (every command refuses the config); with `warn_unused_keys`, other unread keys are warned about."""
    from orchestrator.check.keys import key_report, near_miss_message, unused_message
    from orchestrator.config import load_jobs
    from orchestrator.render import template_words

    jobs = load_jobs(args.config, fixes=args.fixes, filters=args.filters, typed_fixes=args.typed_fixes)
    enter_campaign_folder(args, jobs)
    try:
        text = Path(args.config).read_text(errors="replace")
    except OSError:
        text = ""
    report = key_report(jobs, text + "\n".join([*args.fixes, *args.typed_fixes]), _words_or_nothing(template_words))
    if report.near_misses:
        raise UserError(near_miss_message(args.config, report.near_misses))
    if warn_unused_keys and report.unused:
        print(f"orch: {unused_message(args.config, report.unused)}", file=sys.stderr)
    return jobs


def enter_campaign_folder(args: argparse.Namespace, jobs: list[Job]) -> None:
    """A campaign's paths (templates, scripts, logs, `.orch/`) are relative to the folder it is run from, as in
    AutoExperiment. Run from elsewhere (`orch status ../proj/configs/c.yaml`), orch moves to the nearest folder
    at or above the config's that holds the jobs' template, and says so."""
    template = jobs[0].template if jobs else ""
    if not template or os.path.isabs(template) or os.path.exists(template):
        return
    config = Path(args.config).resolve()
    for folder in config.parents:
        if (folder / template).is_file():
            args.config = str(config)
            os.chdir(folder)
            print(f"orch: working in {folder} (it holds {template}), as if run there", file=sys.stderr)
            return


def rerun_words(args: argparse.Namespace, *flags: str) -> list[str]:
    """`orch run` of the same campaign and selection from anywhere (cron, a monitor job): this installation's
    orch, the config's absolute path, `flags`, then the same fixes and filters."""
    orch = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "orch")
    return [orch, "run", os.path.abspath(args.config), *flags, *[f"-f{fix}" for fix in args.fixes],
            *[f"-F{fix}" for fix in args.typed_fixes], *args.filters]


def _words_or_nothing(template_words):
    """A missing template is reported by rendering, in its own words; here it just reads no keys."""
    def words(path: str) -> frozenset[str]:
        try:
            return template_words(path)
        except UserError:
            return frozenset()
    return words


def campaign_state_dir(config: str, jobs: list[Job] | None = None) -> Path:
    """The campaign's own state folder (per config, see `state.campaign`); an older folder-wide store that
    holds these jobs moves there first."""
    from orchestrator.state.campaign import campaign_dir, migrate_legacy_store

    directory = campaign_dir(config)
    if jobs is not None and migrate_legacy_store(directory, [job.name for job in jobs]):
        print(f"orch: moved this folder's .orch/state.db (an older orch's, one per folder) to {directory}: "
              "each config now has its own state", file=sys.stderr)
    return directory


def cluster_node_gpus(scheduler: Scheduler | None = None) -> NodeGpus | None:
    """GPUs per node as the cluster defines them (for jobs that ask for nodes and name no GPUs), from the given
    backend, else from Slurm when `sbatch` is on PATH; None when it cannot tell or does not answer (their
    GPU-hours stay unknown: a planning machine without Slurm knows nothing of the cluster's nodes)."""
    from orchestrator.scheduler.base import SchedulerUnavailable

    if scheduler is None:
        from orchestrator.scheduler.select import resolve_choice, select_scheduler

        if resolve_choice("auto") != "slurm":
            return None
        scheduler = select_scheduler("slurm")
    node_gpus = getattr(scheduler, "node_gpus", None)  # an optional capability beside the boundary
    try:
        return node_gpus() if node_gpus is not None else None
    except SchedulerUnavailable:
        return None


def require_matplotlib() -> None:
    """`--plot` without the optional extra: a one-line error before anything is computed or written."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError("--plot needs matplotlib: pip install 'orch[plot]'") from None


def require_science(command: str) -> None:
    """The fit needs numpy and scipy (the `science` extra): a one-line error without them. Their thread pools
    are limited at once (`analysis.threads`): a login node is shared."""
    try:
        import numpy  # noqa: F401
        import scipy.linalg  # noqa: F401  (loads the BLAS scipy uses, so the limit reaches it)
        import threadpoolctl  # noqa: F401
    except ImportError:
        raise UserError(f"{command} needs numpy, scipy and threadpoolctl: pip install 'orch[science]'") from None
    from orchestrator.analysis.threads import limit_numeric_threads

    limit_numeric_threads()


def positive_flops(text: str) -> float:
    """An argparse type: a compute budget in FLOPs (1e21)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of FLOPs: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: a count that may be 0 (e.g. bootstrap resamples)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value
