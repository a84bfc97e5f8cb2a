"""`orch ckpt pending|claim|done`: checkpoint bookkeeping for converter jobs and start conditions.

    orch ckpt pending RUN_DIR [--min-iter N] [--count]   prints 1/0 (or how many) pending checkpoints
    orch ckpt pending RUN_DIR --explain                 one line per checkpoint folder: pending or why not
    orch ckpt claim RUN_DIR [--min-iter N]              prints the claimed iteration; exit 1 when none
    orch ckpt done RUN_DIR ITER                         marks ITER converted and releases its claim
    orch ckpt release RUN_DIR ITER                      gives a claim back unconverted (retry later)
    orch ckpt link FROM_RUN_DIR RUN_DIR ITER            1 once FROM's complete checkpoint ITER is linked into
                                                        RUN_DIR/checkpoints (a start condition), else 0
    orch ckpt latest RUN_DIR                            the newest complete save's iteration ("" when none)
    orch ckpt resume RUN_DIR [--dry-run]                the same, after moving the dead saves above it aside
                                                        and pointing DeepSpeed's `latest` at it (a trainer's
                                                        --ckpt-step; campaign/resume.py)
"""

from __future__ import annotations

import argparse

from orchestrator.errors import EXIT_USER_ERROR


def _add_run_arguments(parser: argparse.ArgumentParser, with_min_iter: bool = True) -> None:
    from orchestrator.campaign.claims import DEFAULT_STALE_SECS

    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="run folder holding checkpoints/ (pretrain or cooldown_s<SCALE>)"
    )
    if not with_min_iter:
        return
    parser.add_argument("--min-iter", type=int, default=0, help="ignore checkpoints below this iteration (default: 0)")
    parser.add_argument(
        "--stale-secs", type=float, default=DEFAULT_STALE_SECS,
        help="a claim this old (or whose process is gone) may be taken over (default: %(default)s)",
    )


def run_pending(args: argparse.Namespace) -> int:
    from orchestrator.campaign.claims import explain_pending

    verdicts = explain_pending(args.run_dir, args.min_iter, args.stale_secs)
    if args.explain:
        for iteration, _pending, why in verdicts:
            print(f"{iteration}\t{why}")
        return 0
    pending = [iteration for iteration, is_pending, _why in verdicts if is_pending]
    print(len(pending) if args.count else int(bool(pending)))
    return 0


def run_claim(args: argparse.Namespace) -> int:
    from orchestrator.campaign.claims import claim_next

    iteration = claim_next(args.run_dir, args.min_iter, args.stale_secs, owner_pid=args.owner_pid)
    if iteration is None:
        return 1
    print(iteration)
    return 0


def run_done(args: argparse.Namespace) -> int:
    from orchestrator.campaign.claims import mark_done

    mark_done(args.run_dir, args.iteration)
    return 0


def run_release(args: argparse.Namespace) -> int:
    from orchestrator.campaign.claims import release

    release(args.run_dir, args.iteration)
    return 0


def run_link(args: argparse.Namespace) -> int:
    from pathlib import Path

    from orchestrator.campaign.cooldown_link import link_checkpoint

    linked = link_checkpoint(Path(args.source) / "checkpoints", Path(args.run_dir) / "checkpoints", args.iteration)
    print(1 if linked else 0)
    return 0


def run_latest(args: argparse.Namespace) -> int:
    from orchestrator.campaign.resume import newest_complete

    found = newest_complete(args.run_dir)
    print(found[0] if found else "")
    return 0


def run_resume(args: argparse.Namespace) -> int:
    import sys

    from orchestrator.campaign.resume import resume_point

    point = resume_point(args.run_dir, dry_run=args.dry_run)
    verb = "would move" if args.dry_run else "moved"
    for source, target, why in point.moved:  # on stderr: stdout is the iteration a template reads
        print(f"orch ckpt resume: {verb} {source.name} to {target.parent.name}/{target.name} ({why})", file=sys.stderr)
    if point.latest:
        print(f"orch ckpt resume: {point.latest}", file=sys.stderr)
    print("" if point.iteration is None else point.iteration)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ckpt", help="checkpoints: pending conversions, claims, done markers")
    commands = parser.add_subparsers(dest="ckpt_command", metavar="SUBCOMMAND")
    parser.set_defaults(handler=lambda _args: (parser.print_help(), EXIT_USER_ERROR)[1])

    pending = commands.add_parser(
        "pending", help="print 1 if a complete, unconverted, unclaimed checkpoint exists, else 0"
    )
    _add_run_arguments(pending)
    pending.add_argument("--count", action="store_true", help="print how many instead of 1/0")
    pending.add_argument("--explain", action="store_true",
                         help="print ITER<TAB>why for every checkpoint folder: pending, converted, claimed, or not complete and why")
    pending.set_defaults(handler=run_pending)

    claim = commands.add_parser(
        "claim", help="claim the next pending checkpoint and print its iteration (exit 1: none)"
    )
    _add_run_arguments(claim)
    claim.add_argument(
        "--owner-pid", type=int, default=None,
        help="process whose death frees the claim (default: the calling shell, i.e. the converter job)",
    )
    claim.set_defaults(handler=run_claim)

    done = commands.add_parser("done", help="mark ITER converted and release its claim")
    _add_run_arguments(done, with_min_iter=False)
    done.add_argument("iteration", metavar="ITER", type=int)
    done.set_defaults(handler=run_done)

    link = commands.add_parser(
        "link", help="start a run from another run's checkpoint: print 1 once FROM's complete ITER is linked, else 0",
        description="Links FROM_RUN_DIR/checkpoints/<ITER> into RUN_DIR/checkpoints with the trackers its trainer "
                    "reads, once that checkpoint is complete (every layout `orch ckpt` counts). Linking again is "
                    "harmless and never rolls RUN_DIR back. Use it as a start condition: "
                    "start_condition_cmd: orch ckpt link {PREV_RUN_DIR} {RUN_DIR} {INIT_ITER}",
    )
    link.add_argument("source", metavar="FROM_RUN_DIR", help="the run whose checkpoint to start from")
    link.add_argument("run_dir", metavar="RUN_DIR", help="the run that starts from it")
    link.add_argument("iteration", metavar="ITER", type=int)
    link.set_defaults(handler=run_link)

    latest = commands.add_parser(
        "latest", help="print the newest complete save's iteration (an empty line when none)")
    _add_run_arguments(latest, with_min_iter=False)
    latest.set_defaults(handler=run_latest)

    resume = commands.add_parser(
        "resume", help="where a restarted trainer resumes: print the newest complete save's iteration "
                       "after moving dead saves above it aside",
        description="Prints the iteration of RUN_DIR's newest complete save (an empty line when none: start from "
                    "scratch). Before that, every incomplete save above it (a rank killed mid-save) is moved to "
                    "RUN_DIR/checkpoints/.incomplete/ and DeepSpeed's `latest`, a hint only, is pointed at the "
                    "resume save (removed when there is none). Call it in the training job before the trainer "
                    "starts and pass the iteration as its --ckpt-step; what was moved is said on stderr.",
    )
    _add_run_arguments(resume, with_min_iter=False)
    resume.add_argument("--dry-run", action="store_true", help="say what would be moved; change nothing")
    resume.set_defaults(handler=run_resume)

    release = commands.add_parser("release", help="release the claim on ITER without marking it converted")
    _add_run_arguments(release, with_min_iter=False)
    release.add_argument("iteration", metavar="ITER", type=int)
    release.set_defaults(handler=run_release)
