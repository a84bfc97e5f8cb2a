"""`orch lr schedule|check|finder`: LR schedules as the trainer computes them, campaign checks, LR-finder analysis.

The schedule modules are pure Python; numpy and matplotlib are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import inspect
import sys
from typing import Any

from orchestrator.cli.common import require_matplotlib
from orchestrator.errors import UserError

# Megatron-DeepSpeed spells these two flags with underscores; every other flag uses hyphens.
UNDERSCORE_FLAGS: frozenset[str] = frozenset({"lr_constant_plus_cooldown", "lr_constant_plus_cooldown_frac"})
CHECK_FLAGGED_EXIT = 1


LR_SCHEDULE_JSON_VERSION = 1  # docs/json.md


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("lr", help="LR schedules, campaign LR checks and LR-finder analysis")
    commands = parser.add_subparsers(dest="lr_command", metavar="{schedule,check,finder}")
    _register_schedule(commands)
    _register_check(commands)
    _register_finder(commands)
    parser.set_defaults(handler=lambda args: (parser.print_help(), 2)[1])


# -- orch lr schedule --------------------------------------------------------------------------------
def _framework_flags() -> dict[str, inspect.Parameter]:
    """Every schedule parameter of every framework (the union), by snake_case name."""
    from orchestrator.planning.lr_schedules import FRAMEWORKS, parameter_names

    flags: dict[str, inspect.Parameter] = {}
    for module in FRAMEWORKS.values():
        for name, parameter in parameter_names(module).items():
            flags.setdefault(name, parameter)
    return flags


def _flag_spelling(name: str) -> str:
    return "--" + (name if name in UNDERSCORE_FLAGS else name.replace("_", "-"))


def _register_schedule(commands: argparse._SubParsersAction) -> None:
    from orchestrator.planning.lr_schedules import FRAMEWORKS

    parser = commands.add_parser(
        "schedule", help="the LR curve a framework follows for the given flags",
        description="Framework flags are spelled as the framework spells them; a step is a completed iteration.",
    )
    parser.add_argument("--framework", required=True, choices=sorted(FRAMEWORKS))
    flags = parser.add_argument_group("framework flags (each framework accepts its own)")
    for name, parameter in _framework_flags().items():
        annotation = str(parameter.annotation)
        spelling = _flag_spelling(name)
        aliases = [spelling] + (["--" + name.replace("_", "-")] if name in UNDERSCORE_FLAGS else [])
        if "bool" in annotation:
            flags.add_argument(*aliases, dest=name, action="store_true", default=argparse.SUPPRESS)
        else:
            kind: Any = int if annotation.startswith("int") else float if annotation.startswith("float") else str
            flags.add_argument(*aliases, dest=name, type=kind, default=argparse.SUPPRESS, metavar=name.upper())
    output = parser.add_argument_group("output (without any: a one-line summary)")
    output.add_argument("--at", type=float, metavar="STEP", help="print the LR after STEP iterations")
    output.add_argument("--csv", action="store_true", help="print step,lr for every step up to --until (full precision)")
    output.add_argument("--json", action="store_true",
                        help="print the flags, warmup end, horizon and every (step, lr) up to --until as JSON")
    output.add_argument("--plot", metavar="OUT.png", help="draw the curve (needs matplotlib)")
    output.add_argument("--until", type=int, metavar="STEP", help="last step of --csv/--plot (default: the horizon)")
    output.add_argument("--every", type=int, metavar="N", help="step between --csv/--plot points (default: 1 for --csv)")
    parser.set_defaults(handler=run_schedule)


def _schedule_params(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from orchestrator.planning.lr_schedules import FRAMEWORKS, parameter_names, required_parameters

    module = FRAMEWORKS[args.framework]
    accepted = parameter_names(module)
    given = {name: getattr(args, name) for name in _framework_flags() if hasattr(args, name)}
    foreign = [_flag_spelling(name) for name in given if name not in accepted]
    if foreign:
        raise UserError(f"{args.framework} has no flag {', '.join(foreign)}")
    missing = [_flag_spelling(name) for name in required_parameters(module) if name not in given]
    if missing:
        raise UserError(f"{args.framework} needs {', '.join(missing)}")
    return module, given


def run_schedule(args: argparse.Namespace) -> int:
    from orchestrator.planning.lr_check import JobSchedule, decay_start
    from orchestrator.planning.lr_schedules.common import sample_steps

    module, params = _schedule_params(args)
    module.lr_at(0, **params)  # validate once, before any output
    horizon = int(module.horizon(**params))
    if args.at is not None:
        if args.at < 0:
            raise UserError(f"--at must be >= 0 (got {args.at:g})")
        step = int(args.at) if float(args.at).is_integer() else args.at
        print(repr(module.lr_at(step, **params)))  # repr: the shortest text that reads back to the same double
    last = args.until if args.until is not None else horizon
    if last < 0:
        raise UserError(f"--until must be >= 0 (got {last})")
    if args.every is not None and args.every < 1:
        raise UserError(f"--every must be >= 1 (got {args.every})")
    if args.csv or args.json:
        points = module.curve(range(0, last + 1, args.every or 1), **params)
        if args.csv:
            sys.stdout.write("\n".join(["step,lr"] + [f"{step},{lr!r}" for step, lr in points]) + "\n")
        if args.json:
            document = {"version": LR_SCHEDULE_JSON_VERSION, "framework": args.framework, "flags": params,
                        "warmup_end": module.warmup_end(**params),
                        "horizon": horizon, "points": [[step, lr] for step, lr in points]}
            sys.stdout.write(json.dumps(document) + "\n")
    if args.plot:
        steps = list(range(0, last + 1, args.every)) if args.every else sample_steps(last)
        _plot_curve(module.curve(steps, **params), args.plot, f"{args.framework}: {_describe(params)}")
        print(f"wrote {args.plot}", file=sys.stderr)
    if args.at is None and not args.csv and not args.json and not args.plot:
        schedule = JobSchedule("schedule", module, params, "pretrain")
        start = decay_start(schedule)
        decay = "never decays" if start is None else f"decays from step {start}"
        print(f"{args.framework}: warmup {schedule.warmup_end:g}, peak {schedule.lr_at(schedule.warmup_end):.6g}, "
              f"{decay}, at step {horizon}: {schedule.lr_at(horizon):.6g}")
    return 0


def _describe(params: dict[str, Any]) -> str:
    return " ".join(f"{name}={value}" for name, value in params.items())


def _plot_curve(points: list[tuple[int, float]], output: str, title: str) -> None:
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5))
    axes.plot([step for step, _ in points], [lr for _, lr in points])
    axes.set_xlabel("iteration")
    axes.set_ylabel("learning rate")
    axes.set_title(title, fontsize="small")
    figure.tight_layout()
    figure.savefig(output, dpi=120)
    plt.close(figure)


# -- orch lr check -----------------------------------------------------------------------------------
def _register_check(commands: argparse._SubParsersAction) -> None:
    from orchestrator.cli.common import add_job_selection_arguments

    parser = commands.add_parser(
        "check", help="every job's LR schedule; flags cooldowns whose decay does not start at their resume step",
        description="Exit status 1 when a cooldown is flagged. See docs/planning.md (LR sections) for the keys read.",
    )
    add_job_selection_arguments(parser)
    parser.add_argument("--plot", metavar="OUT.png", help="draw every schedule, cooldowns from their resume step")
    parser.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    from orchestrator.cli.common import selected_jobs
    from orchestrator.planning import lr_check

    report = lr_check.check_jobs(selected_jobs(args))
    print(lr_check.format_report(report))
    if args.plot:
        require_matplotlib()
        lr_check.plot(report, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return CHECK_FLAGGED_EXIT if report.flagged else 0


# -- orch lr finder ----------------------------------------------------------------------------------
def _register_finder(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "finder", help="LR-finder analysis: loss minima, suggested LR, steepest descent",
        description="Each FILE.npz holds arrays `learning_rates` and `losses` (one file per optimizer).",
    )
    parser.add_argument("files", nargs="+", metavar="FILE.npz")
    parser.add_argument("--smooth-frac", type=float, default=0.03,
                        help="moving-average window as a share of the points (default 0.03)")
    parser.add_argument("--min-log-sep", type=float, default=0.0, metavar="DECADES",
                        help="merge minima closer than this in log10(LR) (default 0: keep all)")
    parser.add_argument("--plot", metavar="OUT.png", help="all files on one plot")
    parser.set_defaults(handler=run_finder)


def run_finder(args: argparse.Namespace) -> int:
    try:
        from orchestrator.planning import lr_finder
    except ImportError as error:
        raise UserError(f"orch lr finder needs numpy ({error}): pip install 'orch[science]'") from None

    results = [lr_finder.analyse_file(path, args.smooth_frac, args.min_log_sep) for path in args.files]
    print("\n".join(lr_finder.format_report(result) for result in results))
    if args.plot:
        require_matplotlib()
        lr_finder.plot(results, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0
