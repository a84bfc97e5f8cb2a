"""`orch fit CSV|CONFIG`: Chinchilla's scaling law L(N, D) = E + A/N^alpha + B/D^beta from (params, tokens, loss).

Approach 3 of Hoffmann et al. (2022) with bootstrap intervals, compute-optimal N*, D* for given budgets,
and Approach 2 (IsoFLOP profiles) beside it when the points share compute budgets. The points come from a
CSV, or straight from a campaign's results (run ends by default). See docs/analysis.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from orchestrator.cli.common import (
    add_job_selection_arguments,
    non_negative_int,
    positive_flops,
    require_matplotlib,
    require_science,
    selected_jobs,
)
from orchestrator.errors import UserError


FIT_JSON_VERSION = 1  # docs/json.md


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("fit", help="fit the scaling law L(N, D) to a campaign's results or a CSV; "
                                              "compute-optimal N, D")
    add_job_selection_arguments(parser)
    parser.add_argument("--params-col", default=None,
                        help="CSV: column with the parameter count N (default: the first of params, eval/parameters, "
                             "parameters, N_PARAMS; `orch results` writes the evaluator's `eval/parameters`)")
    parser.add_argument("--tokens-col", default="tokens", help="CSV: column with the training tokens D (default: tokens)")
    parser.add_argument("--loss-col", default=None,
                        help="column with the loss L (default: eval/val_loss, the evaluator's held-out loss, when "
                             "the results have it, else log_val_loss, the training log's validation loss)")
    parser.add_argument("--params-key", metavar="KEY",
                        help="campaign: job parameter holding N (default: N_PARAMS if the jobs have it, else the "
                             "evaluator's 'parameters' result)")
    parser.add_argument("--points", choices=("ends", "all"), default="ends",
                        help="campaign, or a CSV with `orch results`' fit column: one point per finished run end "
                             "(default), or every evaluated checkpoint")
    parser.add_argument("--every-run", action="store_true",
                        help="campaign (or a CSV with a fit column): keep every run's point, not only the lowest loss per "
                             "size and token count")
    parser.add_argument("--keep-unannealed", action="store_true",
                        help="campaign (or a CSV with a fit column): keep run ends whose LR is still above half its "
                             "peak (a WSD pretrain never cooled); they lie above the law and are left out by default")
    parser.add_argument("--irreducible", type=float, metavar="LOSS",
                        help="the data's known entropy, if it has one: printed beside the fitted E")
    parser.add_argument("--bootstrap", type=non_negative_int, default=500, metavar="K",
                        help="resampled refits for the 95%% intervals (default 500; 0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
    parser.add_argument("--budget", type=positive_flops, action="append", default=[], metavar="FLOPS",
                        help="a compute budget C = 6ND to allocate (repeatable), e.g. 1e21")
    parser.add_argument("--isoflop-tolerance", type=float, default=0.05, metavar="REL",
                        help="points whose 6ND agree within this fraction share a budget (default 0.05)")
    parser.add_argument("--json", action="store_true", help="print E A B alpha beta ci optimal n_points as JSON")
    parser.add_argument("--plot", metavar="PNG", help="loss against tokens per model size, and against compute")
    parser.set_defaults(handler=run_fit)


def load_points(args: argparse.Namespace):
    """(points, a label per point, lines about where they came from) from the CSV or the campaign."""
    from orchestrator.analysis.campaign_points import campaign_points
    from orchestrator.analysis.points import csv_loss_column, read_points

    if args.config.endswith(".csv"):
        if args.filters or args.fixes or args.typed_fixes:
            raise UserError("KEY=VALUE filters and -f/-F apply to a campaign config, not to a CSV")
        points = read_points(args.config, args.params_col, args.tokens_col, args.loss_col or csv_loss_column(args.config))
        about = [f"{points.skipped} rows without values skipped"] if points.skipped else []
        if points.roles is None:
            about.insert(0, f"points: every row with N, D and L ({len(points.loss)}); the CSV has no `fit` column to "
                            "select run ends by (`orch results` writes one; `orch fit CONFIG` selects them)")
            return points, [f"{args.config} line {line}" for line in points.lines], about
        return select_csv_points(points, args, about)
    found = campaign_points(selected_jobs(args), params_key=args.params_key, loss_col=args.loss_col,
                            which=args.points, best_of_sweep=not args.every_run,
                            keep_unannealed=args.keep_unannealed)
    about = found.describe()
    return found.points, found.labels, about


def select_csv_points(points, args: argparse.Namespace, about: list[str]):
    """A results CSV's points chosen by its `fit` column with the rule `orch fit CONFIG` uses."""
    from orchestrator.analysis.campaign_points import END_NOT_ANNEALED, keeps, lowest_per_size_and_tokens, points_kind
    from orchestrator.analysis.points import Points

    kept = [(n, d, loss, line) for n, d, loss, line, role
            in zip(points.params, points.tokens, points.loss, points.lines, points.roles)
            if keeps(role, args.points, args.keep_unannealed)]
    merged = 0
    if not args.every_run:
        kept, merged = lowest_per_size_and_tokens(kept)
    kept.sort()
    unannealed = sum(role == END_NOT_ANNEALED for role in points.roles)
    about.insert(0, f"points: {points_kind(args.points, args.keep_unannealed)}, by the CSV's `fit` column: "
                 f"{len(kept)} of {len(points.roles)} rows"
                 + (f"; {merged} dropped for a lower loss at the same size and tokens" if merged else "")
                 + (f"; {unannealed} run ends not annealed left out (--keep-unannealed keeps them)"
                    if unannealed and args.points == "ends" and not args.keep_unannealed else ""))
    chosen = Points([k[0] for k in kept], [k[1] for k in kept], [k[2] for k in kept], [k[3] for k in kept],
                    points.skipped)
    return chosen, [f"{args.config} line {k[3]}" for k in kept], about


def run_fit(args: argparse.Namespace) -> int:
    require_science("orch fit")
    if args.plot:
        require_matplotlib()
    from orchestrator.analysis.isoflop import fit_isoflop
    from orchestrator.analysis.scaling_law import FitError, fit_law, warn_if_unreliable

    points, labels, about = load_points(args)
    try:
        fit = fit_law(points.params, points.tokens, points.loss, bootstrap=args.bootstrap, seed=args.seed)
        optimal = [fit.law.optimal(budget) for budget in args.budget]
    except FitError as error:
        raise UserError(f"{args.config}: {error}") from None
    notes = warn_if_unreliable(fit)
    for note in notes:
        print(f"orch fit: warning: {note}", file=sys.stderr)
    if args.json:
        payload: dict[str, Any] = {
            "version": FIT_JSON_VERSION,
            **fit.law.as_dict(),
            "ci": {name: list(bounds) for name, bounds in fit.intervals.items()},
            "optimal": [{"flops": c, "params": n, "tokens": d, "loss": loss}
                        for c, (n, d, loss) in zip(args.budget, optimal)],
            "n_points": fit.n_points,
        }
        json.dump(payload, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        isoflop = fit_isoflop(points.params, points.tokens, points.loss, args.isoflop_tolerance)
        sys.stdout.write(format_report(fit, labels, about, args, optimal, isoflop, points))
    if args.plot:
        from orchestrator.analysis.plot import plot_fit

        plot_fit(fit, points, args.plot)
        if not args.json:
            print(f"plot: {args.plot}")
    return 0


def _extrapolation_note(budget: float, largest: float, loss: float, irreducible: float | None) -> str:
    """Say when a row lies beyond the fitted runs' compute, and when it undercuts the data's known floor."""
    notes = []
    if budget > largest * 1.05:
        notes.append(f"{budget / largest:.3g}x the largest run's 6ND: extrapolated")
    if irreducible is not None and loss < irreducible:
        notes.append("below the known entropy: the law past its data, not a promise")
    return f"  ({'; '.join(notes)})" if notes else ""


def format_report(fit, labels: list[str], about: list[str], args: argparse.Namespace, optimal, isoflop,
                  fit_points) -> str:
    import numpy as np

    law = fit.law
    lines = [f"Chinchilla law L(N, D) = E + A/N^alpha + B/D^beta, Approach 3 (Huber 1e-3 on log L, L-BFGS-B): "
             f"{fit.n_points} points from {args.config}"]
    lines += [f"  {line}" for line in about]
    interval_title = f"95% interval ({args.bootstrap} resamples, seed {args.seed})" if fit.intervals else ""
    lines.append(f"  {'parameter':<10} {'value':>12}   {interval_title}")
    for name, value in law.as_dict().items():
        low_high = fit.intervals.get(name)
        shown = f"[{low_high[0]:.4g}, {low_high[1]:.4g}]" if low_high else ""
        lines.append(f"  {name:<10} {value:>12.5g}   {shown}")
    if args.irreducible is not None:
        gap = law.E - args.irreducible
        lines.append(f"fitted E = {law.E:.4f} against the data's known entropy {args.irreducible:.4f}: "
                     f"{abs(gap):.4f} {'above' if gap >= 0 else 'below'} it ({100 * gap / args.irreducible:+.1f}%)")
    residuals = fit.residuals
    worst = int(np.argmax(np.abs(residuals)))
    lines.append(f"residuals of log L: RMS {np.sqrt(np.mean(residuals ** 2)):.4g}, largest {residuals[worst]:+.4g} "
                 f"({labels[worst]})")
    if optimal:
        lines.append("compute-optimal allocation (C = 6 N D):")
        lines.append(f"  {'FLOPs':>10} {'params N*':>12} {'tokens D*':>12} {'D*/N*':>8} {'loss':>8}")
        largest = float(np.max(6 * np.asarray(fit_points.params) * np.asarray(fit_points.tokens)))
        for budget, (n, d, loss) in zip(args.budget, optimal):
            lines.append(f"  {budget:>10.3g} {n:>12.4g} {d:>12.4g} {d / n:>8.1f} {loss:>8.4f}"
                         + _extrapolation_note(budget, largest, loss, args.irreducible))
    total = law.alpha + law.beta
    if isoflop is not None:
        lines.append(f"IsoFLOP (Approach 2) from {len(isoflop.profiles)} budgets: N_opt ~ C^{isoflop.params_exponent:.3f}, "
                     f"D_opt ~ C^{isoflop.tokens_exponent:.3f}; Approach 3 gives C^{law.beta / total:.3f} and "
                     f"C^{law.alpha / total:.3f}")
        lines.extend(f"  skipped {reason}" for reason in isoflop.skipped)
    else:
        lines.append("IsoFLOP (Approach 2): no two budgets with 3 or more model sizes each: not computed")
    return "\n".join(lines) + "\n"
