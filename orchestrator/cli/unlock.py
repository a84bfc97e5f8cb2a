"""`orch unlock CONFIG`: break the campaign's monitor lease at once (a monitor that died on a login node that is
gone: its lease would otherwise be taken over only after its TTL). Says whose lease it broke; a monitor still
running with it finds its lease gone at its next check and stops without submitting anything more."""

from __future__ import annotations

import argparse

from orchestrator.cli.common import add_job_selection_arguments, campaign_state_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("unlock", help="break the campaign's monitor lease (its monitor is gone)")
    add_job_selection_arguments(parser)
    parser.set_defaults(handler=handle_unlock)


def handle_unlock(args: argparse.Namespace) -> int:
    from orchestrator.state.lease import break_lease

    broken = break_lease(campaign_state_dir(args.config))
    print(f"orch: broke the monitor lease of {broken}; the next `orch run` starts at once" if broken
          else f"orch: {args.config} has no monitor lease: nothing to unlock")
    return 0
