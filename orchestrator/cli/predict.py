"""`orch predict`: fit a schedule-aware loss law to observed loss curves, predict the loss of other LR schedules.

    orch predict --schedules S.csv --observed O.csv [--at A.csv] [--law mpl|tissue] [--bootstrap K] [--csv]

S.csv `curve,step,lr` (every step of every curve), O.csv `curve,step,loss` (any steps of the observed curves),
A.csv `curve,step` (default: every step of every curve without observations). One model size per call.
The laws and how they are fitted: orchestrator/analysis/loss_laws.py and loss_fit.py, docs/analysis.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys

from orchestrator.cli.common import non_negative_int, require_science

PREDICT_JSON_VERSION = 1  # docs/json.md


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="fit a schedule-aware loss law (Multi-Power Law, Tissue et al.) to observed loss curves and "
                        "predict other LR schedules",
        description="Fits a loss law that knows the LR schedule to the observed curves and predicts the loss at every "
                    "requested step of any schedule. One model size per call: the law's constants belong to one model.")
    parser.add_argument("--schedules", required=True, metavar="S.csv",
                        help="curve,step,lr: the LR of every optimizer step of every curve, observed and to predict "
                             "(`orch lr schedule --csv` prints a curve's)")
    parser.add_argument("--observed", required=True, metavar="O.csv",
                        help="curve,step,loss: observed losses (any steps; at least 3 per observed curve)")
    parser.add_argument("--at", metavar="A.csv",
                        help="curve,step: where to predict (default: every step of every curve without observations)")
    parser.add_argument("--law", choices=("mpl", "tissue"), default="mpl",
                        help="mpl: the Multi-Power Law (Luo et al. 2025), fitted as its authors fit it (default; about "
                             "10-15 s); tissue: Tissue et al. 2024, L0 + A*S1^-alpha - C*S2 (about 2 s)")
    parser.add_argument("--bootstrap", type=non_negative_int, default=0, metavar="K",
                        help="K refits on resampled observations for 95%% intervals (default 0: none; each refit costs "
                             "a fit)")
    parser.add_argument("--resample", choices=("points", "curves"), default="points",
                        help="what the bootstrap draws with replacement (default: points)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--csv", action="store_true", help="print curve,step,loss (+ loss_low,loss_high with --bootstrap)")
    output.add_argument("--json", action="store_true", help="print the fitted law and the predictions as JSON")
    parser.set_defaults(handler=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    require_science("orch predict")
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
    for curve in targets:
        last = [row for row in rows if row[0] == curve.name][-1]
        interval = f" [{last[3]:.4f}, {last[4]:.4f}]" if last[3] is not None else ""
        print(f"  {curve.name}: step {last[1]} loss {last[2]:.4f}{interval}  ({len(curve.steps)} step(s) predicted; "
              "--csv prints every one)")
    return 0
