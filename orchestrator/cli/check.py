"""`orch check CONFIG`: Megatron flags against the pinned parser, data paths, checkpoint sources.

The same checks run first in `orch build`, `orch build-and-run` and `orch run` (skip with `--no-check`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from orchestrator.cli.common import add_job_selection_arguments, selected_jobs

if TYPE_CHECKING:
    from orchestrator.check import CheckOptions
    from orchestrator.jobs import Job


def _keys(text: str) -> tuple[str, ...]:
    return tuple(key for key in text.split(",") if key)


def add_check_arguments(parser: argparse.ArgumentParser, skippable: bool = True) -> None:
    from orchestrator.check import data_paths, flags

    group = parser.add_argument_group("checks before anything is written or submitted (orch check)")
    if skippable:
        group.add_argument("--no-check", action="store_true", help="skip the flag, data and checkpoint checks")
    group.add_argument("--framework", choices=flags.FRAMEWORKS, default="megatron-lm",
                       help="parser the Megatron commands are checked against (a job's MEGATRON_FRAMEWORK parameter"
                            " wins; default: %(default)s)")
    group.add_argument("--megatron-version", metavar="VERSION",
                       help="the Megatron release the jobs run; must be the one the flag schema was made from")
    group.add_argument("--flag-schema", metavar="FILE",
                       help="a schema made by scripts/extract-megatron-flags.py instead of the shipped one")
    group.add_argument("--entry", action="append", metavar="GLOB",
                       help="program names that start a Megatron command (repeatable; default: pretrain_*.py)")
    group.add_argument("--data-keys", type=_keys, default=data_paths.DEFAULT_PREFIX_KEYS, metavar="KEY,KEY",
                       help="job parameters holding Megatron data prefixes (default: %(default)s)")
    group.add_argument("--data-list-keys", type=_keys, default=data_paths.DEFAULT_LIST_KEYS, metavar="KEY,KEY",
                       help="job parameters holding data-file lists (default: %(default)s)")
    group.add_argument("--no-data-check", action="store_true", help="check the flags only")


def check_options(args: argparse.Namespace, jobs: Sequence[Job]) -> CheckOptions:
    from orchestrator.check import CheckOptions, flags
    from orchestrator.render.generated import generated_paths

    return CheckOptions(framework=args.framework, version=args.megatron_version, schema_path=args.flag_schema,
                        entries=tuple(args.entry) if args.entry else flags.DEFAULT_ENTRIES,
                        prefix_keys=args.data_keys, list_keys=args.data_list_keys, data=not args.no_data_check,
                        generated=generated_paths(jobs))


def check_rendered(args: argparse.Namespace, rendered: Sequence[tuple[Job, str]]) -> None:
    """Raise the UserError listing every problem, unless `--no-check`."""
    from orchestrator.check import check_campaign, raise_on_problems

    if getattr(args, "no_check", False):
        return
    raise_on_problems(check_campaign(rendered, check_options(args, [job for job, _ in rendered])))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("check", help="check Megatron flags, data paths and checkpoint sources of every job")
    add_job_selection_arguments(parser)
    add_check_arguments(parser, skippable=False)
    parser.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    from orchestrator.check import check_campaign, flags
    from orchestrator.render.write import render_all

    jobs = selected_jobs(args, warn_unused_keys=True)
    rendered = render_all(jobs)
    options = check_options(args, jobs)
    problems = check_campaign(rendered, options)
    from orchestrator.check import HOW_TO_PROCEED, grouped

    commands = sum(len(flags.megatron_invocations(script, options.entries)) for _, script in rendered)
    causes = grouped(problems)
    for line in causes:
        print(line)
    print(f"{len(jobs)} jobs, {commands} Megatron command(s) checked: "
          + (f"{len(problems)} problem(s) from {len(causes)} cause(s)" if problems else "no problems"))
    if not commands:
        print(f"orch: warning: no job script runs a Megatron entry point ({', '.join(options.entries)}), so no flag "
              "or parallelism was checked; name wrapper scripts with --entry (e.g. --entry train_alcf.sh)",
              file=sys.stderr)
    if problems:
        print(f"how to proceed: {HOW_TO_PROCEED}")
    return 2 if problems else 0
