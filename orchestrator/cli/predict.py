"""`orch predict`: fit a schedule-aware loss law to observed loss curves, predict the loss of other LR schedules.

    orch predict --schedules S.csv --observed O.csv [--at A.csv] [--law mpl|tissue] [--bootstrap K] [--csv]
    orch predict CONFIG [KEY=V1,V2] [-f KEY=VALUE] [--law ...] [--bootstrap K] [--json]

S.csv `curve,step,lr` (every step of every curve), O.csv `curve,step,loss` (any steps of the observed curves),
A.csv `curve,step` (default: every step of every curve without observations). One model size per call.
With a campaign config: every cooldown branch's final loss from its pretrain run and its finished sibling branches
(`analysis/campaign_predict.py`).
The laws and how they are fitted: orchestrator/analysis/loss_laws.py and loss_fit.py, docs/analysis.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys

from orchestrator.cli.common import add_job_selection_arguments, non_negative_int, require_science, selected_jobs
from orchestrator.cli.predict_skip import MIN_REFITS, check_rule_arguments, parse_fraction
from orchestrator.cli.run import add_scheduler_argument
from orchestrator.errors import UserError

PREDICT_JSON_VERSION = 1  # docs/json.md


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="fit a schedule-aware loss law (Multi-Power Law, Tissue et al.) to observed loss curves and "
                        "predict other LR schedules",
        description="Fits a loss law that knows the LR schedule to the observed curves and predicts the loss at every "
                    "requested step of any schedule. One model size per call: the law's constants belong to one model.")
    add_job_selection_arguments(parser, config_help="a campaign: predict every cooldown branch's final loss from its "
                                                     "training logs")
    parser.add_argument("--schedules", metavar="S.csv",
                        help="curve,step,lr: the LR of every optimizer step of every curve, observed and to predict "
                             "(`orch lr schedule --csv` prints a curve's)")
    parser.add_argument("--observed", metavar="O.csv",
                        help="curve,step,loss: observed losses (any steps; at least 3 per observed curve)")
    parser.add_argument("--at", metavar="A.csv",
                        help="curve,step: where to predict (default: every step of every curve without observations)")
    parser.add_argument("--law", choices=("mpl", "tissue"), default="mpl",
                        help="mpl: the Multi-Power Law (Luo et al. 2025), fitted as its authors fit it (default; about "
                             "9 s on 450 points); tissue: Tissue et al. 2024, L0 + A*S1^-alpha - C*S2 (about 2 s)")
    parser.add_argument("--bootstrap", type=non_negative_int, default=0, metavar="K",
                        help="K refits on resampled observations for 95%% intervals (default 0: none; each refit costs "
                             "a fit)")
    parser.add_argument("--resample", choices=("points", "curves"), default="points",
                        help="what the bootstrap draws with replacement (default: points)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    parser.add_argument("--skip-within", type=parse_fraction, metavar="W",
                        help="with CONFIG (off by default): predict instead of run every unstarted branch whose final "
                             "loss's 95%% interval is at most W wide relative to the loss (e.g. 0.5%%; needs --bootstrap "
                             f"{MIN_REFITS} or more): its jobs are cancelled with the prediction as the reason and `orch "
                             "plan` shows the GPU-hours saved")
    add_scheduler_argument(parser)
    parser.add_argument("--wait", type=float, default=120.0, metavar="SECS",
                        help="with --skip-within, while a monitor runs: how long to wait for it to cancel (default 120)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--csv", action="store_true", help="print curve,step,loss (+ loss_low,loss_high with --bootstrap)")
    output.add_argument("--json", action="store_true", help="print the fitted law and the predictions as JSON")
    parser.set_defaults(handler=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    require_science("orch predict")
    check_rule_arguments(args)
    if args.config:
        if args.schedules or args.observed or args.at:
            raise UserError("give a campaign CONFIG or --schedules/--observed CSVs, not both")
        return run_campaign(args)
    if not (args.schedules and args.observed):
        raise UserError("orch predict needs --schedules S.csv and --observed O.csv, or a campaign CONFIG")
    from orchestrator.analysis.loss_curves_io import read_observed, read_schedules, read_targets
    from orchestrator.analysis.loss_fit import fit_law, predict
    schedules = read_schedules(args.schedules)
    observed = read_observed(args.observed, schedules)
    targets = read_targets(args.at, schedules, observed)
    fitted = fit_law(observed, args.law, bootstrap=args.bootstrap, resample=args.resample, seed=args.seed)
    rows = []
    for curve in targets:
        loss, low, high = predict(fitted, curve)
        for index, step in enumerate(curve.steps):
            rows.append((curve.name, int(step), float(loss[index]),
                         None if low is None else float(low[index]), None if high is None else float(high[index])))
    summary = (f"{fitted.law}: fitted to {fitted.n_points} points of {fitted.n_curves} curve(s); "
               + ", ".join(f"{name} {value:.6g}" for name, value in fitted.params.items())
               + (f"; 95% intervals from {len(fitted.bootstrap)} refits on resampled {args.resample}" if fitted.bootstrap else ""))
    if args.json:
        print(json.dumps({"version": PREDICT_JSON_VERSION, "law": fitted.law, "params": fitted.params,
                          "objective": fitted.objective, "n_points": fitted.n_points, "n_curves": fitted.n_curves,
                          "bootstrap": len(fitted.bootstrap),
                          "predictions": [{"curve": c, "step": s, "loss": value, "low": lo, "high": hi}
                                          for c, s, value, lo, hi in rows]}))
        return 0
    if args.csv:
        print(summary, file=sys.stderr)
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["curve", "step", "loss", *(["loss_low", "loss_high"] if fitted.bootstrap else [])])
        for curve, step, value, low, high in rows:
            writer.writerow([curve, step, f"{value:.6g}", *([f"{low:.6g}", f"{high:.6g}"] if fitted.bootstrap else [])])
        return 0
    print(summary)
    last_rows = {row[0]: row for row in rows}  # rows run in step order within each curve
    for curve in targets:
        last = last_rows[curve.name]
        interval = f" [{last[3]:.4f}, {last[4]:.4f}]" if last[3] is not None else ""
        print(f"  {curve.name}: step {last[1]} loss {last[2]:.4f}{interval}  ({len(curve.steps)} step(s) predicted; "
              "--csv prints every one)")
    return 0


def run_campaign(args: argparse.Namespace) -> int:
    from orchestrator.analysis.campaign_predict import predict_branches
    from orchestrator.campaign.results import ResultKeys

    jobs = selected_jobs(args)
    predictions = predict_branches(jobs, args.law, bootstrap=args.bootstrap, seed=args.seed)
    status = print_campaign(args, predictions)
    if args.skip_within is not None:
        import contextlib

        from orchestrator.cli.predict_skip import mark_predicted

        # --json and --csv keep standard output for their document: what is marked goes to standard error.
        with contextlib.redirect_stdout(sys.stderr if args.json or args.csv else sys.stdout):
            status = max(status, mark_predicted(args, predictions, jobs, ResultKeys().run_dir))
    return status


def print_campaign(args: argparse.Namespace, predictions) -> int:
    if args.json:
        print(json.dumps({"version": PREDICT_JSON_VERSION, "law": args.law, "bootstrap": args.bootstrap,
                          "branches": [vars(branch) for branch in predictions]}))
        return 0
    if args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["run", "parent", "resume_step", "final_step", "loss", "loss_low", "loss_high", "observed",
                         "why_not"])
        for branch in predictions:
            writer.writerow([branch.run, branch.parent, branch.resume_step, branch.final_step,
                             *(("" if value is None else f"{value:.6g}")
                               for value in (branch.loss, branch.low, branch.high, branch.observed)), branch.why_not])
        return 0
    print(f"{args.law}: each cooldown's final training loss, fitted on its pretrain run and its finished sibling branches "
          "(a finished branch is left out of its own fit)")
    errors = []
    for branch in predictions:
        where = f"{branch.run} ({branch.resume_step} -> {branch.final_step})"
        if branch.loss is None:
            print(f"  {where}: not predicted: {branch.why_not}")
            continue
        interval = f" [{branch.low:.4f}, {branch.high:.4f}]" if branch.low is not None else ""
        seen = ""
        if branch.observed is not None:
            errors.append(abs(branch.loss - branch.observed) / branch.observed)
            seen = f", observed {branch.observed:.4f} ({(branch.loss - branch.observed) / branch.observed:+.2%})"
        print(f"  {where}: predicted {branch.loss:.4f}{interval}{seen}")
    if errors:
        print(f"finished branches: mean relative error {sum(errors) / len(errors):.2%}, largest {max(errors):.2%}")
    return 0
