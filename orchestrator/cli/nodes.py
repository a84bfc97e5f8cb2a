"""`orch nodes CONFIG [--clear [NODE ...]]`: the nodes the campaign excludes after they failed its jobs.

The monitor marks the nodes an attempt ran on when it ended NODE_FAIL or its output matched `node_fault_regex`
(`state.bad_nodes`); its later submissions pass `sbatch --exclude` with the marks in force (younger than
`orch run --bad-node-hours`, at most `--max-bad-nodes`). `--clear` forgets marks: every one, or the nodes named.
"""

from __future__ import annotations

import argparse
import time

from orchestrator.state.bad_nodes import DEFAULT_HOURS, DEFAULT_LIMIT


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("nodes", help="the nodes this campaign excludes after they failed its jobs")
    parser.add_argument("config", metavar="CONFIG", help="campaign YAML file")
    parser.add_argument("--clear", nargs="*", metavar="NODE",
                        help="forget the marks of these nodes (every mark when none is named)")
    parser.add_argument("--bad-node-hours", type=float, default=DEFAULT_HOURS, metavar="H",
                        help=f"as given to `orch run` (default {DEFAULT_HOURS:g}): which marks are still in force")
    parser.add_argument("--max-bad-nodes", type=int, default=DEFAULT_LIMIT, metavar="N",
                        help=f"as given to `orch run` (default {DEFAULT_LIMIT})")
    parser.set_defaults(handler=run_nodes)


def run_nodes(args: argparse.Namespace) -> int:
    from orchestrator.state.bad_nodes import clear_bad, read_bad_nodes
    from orchestrator.state.campaign import campaign_dir

    directory = campaign_dir(args.config)
    if args.clear is not None:
        cleared = clear_bad(directory, args.clear or None)
        unknown = sorted(set(args.clear) - set(cleared))
        print(f"cleared {len(cleared)} node(s)" + (f": {' '.join(cleared)}" if cleared else "")
              + (f"; not marked: {' '.join(unknown)}" if unknown else ""))
        return 0
    print(describe_bad_nodes(read_bad_nodes(directory), time.time(), args.bad_node_hours, args.max_bad_nodes)
          or "no node marked bad")
    return 0


def describe_bad_nodes(marks, now: float, hours: float = DEFAULT_HOURS, limit: int = DEFAULT_LIMIT) -> str:
    """One line per mark, those in force first ('' when there is none); `orch status` prints the same."""
    from orchestrator.state.bad_nodes import excluded

    if not marks:
        return ""
    live = excluded(marks, now, hours, limit)
    lines = [f"nodes excluded from submissions ({len(live)} of {len(marks)} marked; `orch nodes --clear` forgets):"]
    in_force = {mark.node for mark in live}
    for mark in sorted(marks.values(), key=lambda m: (m.node not in in_force, -m.marked_at)):
        left = hours * 3600 - (now - mark.marked_at)
        when = (f"excluded for {left / 3600:.1f} h more" if mark.node in in_force
                else "expired" if left <= 0 else "over --max-bad-nodes: not excluded")
        lines.append(f"  {mark.node}: {when}; {mark.job} ({mark.scheduler_id}) {mark.why}, "
                     f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(mark.marked_at))}")
    return "\n".join(lines)
