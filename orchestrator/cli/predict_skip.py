"""`orch predict CONFIG --skip-within W`: the opt-in rule that predicts a cooldown branch instead of running it.

A branch qualifies when it has not started (no logged step, none of its jobs' output files exists) and the 95%
interval of its predicted final loss is at most W wide, relative to the loss. Its jobs (training and conversion,
every job of its run folder) are cancelled as `orch cancel` cancels them, with the prediction as the reason, so no
monitor submits them and `orch run --retry-cancelled` runs them after all; `state.predicted` records the prediction
for `orch plan`, which shows the GPU-hours saved.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from orchestrator.errors import UserError
from orchestrator.jobs import Job

MIN_REFITS = 20  # fewer bootstrap refits give an interval too rough to decide on


def parse_fraction(text: str) -> float:
    """`0.005` or `0.5%`: a relative width of the 95% interval."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction (e.g. 0.005 or 0.5%)") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a relative interval width between 0 and 1 (e.g. 0.005 or 0.5%)")
    return value


def check_rule_arguments(args: argparse.Namespace) -> None:
    if args.skip_within is None:
        return
    if not args.config:
        raise UserError("--skip-within marks a campaign's branches: give the campaign CONFIG")
    if args.bootstrap < MIN_REFITS:
        raise UserError(f"--skip-within decides on the prediction's 95% interval: add --bootstrap {MIN_REFITS} or more "
                        f"(got {args.bootstrap})")


def _not_started(branch, members: Sequence[Job]) -> bool:
    return branch.observed is None and not branch.observed_curve and not any(
        os.path.exists(job.output_file) for job in members)


def qualifying(predictions, jobs: Sequence[Job], run_dir_key: str, within: float) -> list[tuple[object, list[Job]]]:
    """(branch, its jobs) of every unstarted branch whose interval is narrow enough."""
    by_run: dict[str, list[Job]] = {}
    for job in jobs:
        by_run.setdefault(str(job.params.get(run_dir_key)), []).append(job)
    chosen = []
    for branch in predictions:
        if branch.loss is None or branch.low is None or branch.high is None:
            continue
        members = by_run.get(branch.run, [])
        if members and _not_started(branch, members) and (branch.high - branch.low) / branch.loss <= within:
            chosen.append((branch, members))
    return chosen


def mark_predicted(args: argparse.Namespace, predictions, jobs: Sequence[Job], run_dir_key: str) -> int:
    """Cancel the qualifying branches' jobs and record their predictions; prints what it did."""
    from orchestrator.cli.cancel import cancel_campaign_jobs, cancelled_by
    from orchestrator.cli.common import campaign_state_dir
    from orchestrator.state.predicted import PredictedBranch, record_predicted

    chosen = qualifying(predictions, jobs, run_dir_key, args.skip_within)
    if not chosen:
        print(f"--skip-within {args.skip_within:.3%}: no unstarted branch has a 95% interval that narrow: nothing marked")
        return 0
    by = cancelled_by()
    status = 0
    records = []
    for branch, members in chosen:
        reason = (f"predicted instead of run: final loss {branch.loss:.4f} [{branch.low:.4f}, {branch.high:.4f}] "
                  f"({args.law}, `orch predict --skip-within {args.skip_within:g}` by {by})")
        print(f"{branch.run}: {reason}")
        status = max(status, cancel_campaign_jobs(args.config, list(members), args.scheduler, reason, args.wait))
        records.append(PredictedBranch(branch.run, [job.name for job in members], branch.loss, branch.low, branch.high,
                                       args.law, by, list(branch.fitted_on)))
    # After the cancels: a record never claims a branch that might still be submitted.
    record_predicted(campaign_state_dir(args.config, list(jobs)), records)
    print(f"{len(chosen)} branch(es) predicted instead of run; `orch plan` shows the GPU-hours saved, "
          "`orch run --retry-cancelled` runs them after all")
    return status


def predicted_jobs(config: str, jobs: Sequence[Job]) -> dict[str, object]:
    """Job name -> its branch's record, for the jobs of branches marked predicted that have not run since."""
    from orchestrator.state.campaign import campaign_dir
    from orchestrator.state.predicted import read_predicted

    records = read_predicted(campaign_dir(config))
    if not records:
        return {}
    by_name = {job.name: job for job in jobs}
    found = {}
    for record in records.values():
        members = [by_name[name] for name in record.jobs if name in by_name]
        if members and not any(os.path.exists(job.output_file) for job in members):
            found.update({job.name: record for job in members})
    return found
