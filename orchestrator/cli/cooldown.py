"""`orch cooldown cmds|milestones|sweep|link`: plan and wire up LR cooldowns of a constant-LR run.

The `add_*_arguments` / `run_*` pairs are shared with the standalone scripts in `helpers/`
(`make_cooldown_cmds.py`, `build_checkpoints_from_tokens.py`, `gen_cooldown_sweep.sh`), which keep
the flags of the tools users know.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from orchestrator.errors import EXIT_USER_ERROR, UserError
from orchestrator.planning import cooldown_cmds, cooldown_sweep, milestones

DEFAULTS = cooldown_cmds.CommandOptions(load="-", data_file_list="-")


def _add_command_options(parser: argparse.ArgumentParser) -> None:
    """Flags shaping each emitted command (shared by `cmds` and `sweep`)."""
    parser.add_argument("--train-script", default=DEFAULTS.train_script, help="training wrapper run with bash (default: %(default)s)")
    parser.add_argument("--grad-acc-steps", type=int, default=DEFAULTS.grad_acc_steps, help="GRAD_ACC_STEPS (default: %(default)s)")
    parser.add_argument("--opt", default=DEFAULTS.opt, help="OPT, the optimizer (default: %(default)s)")
    parser.add_argument("--min-lr", default=DEFAULTS.min_lr, help="--min-lr passed to training (default: %(default)s)")
    parser.add_argument(
        "--no-override-ckpt-opt",
        action="store_true",
        help="omit OVERRIDE_CKPT_OPT_PARAM=1 (keep the optimizer params stored in the checkpoint)",
    )
    parser.add_argument("--extra-args", default="", help='extra training arguments, appended verbatim (e.g. "--save ckpt_cd")')
    parser.add_argument(
        "--frac-convention",
        choices=cooldown_cmds.FRAC_CONVENTIONS,
        default="cooldown",
        help="cooldown: frac = R/T, the cooldown's share (Megatron-DeepSpeed); "
        "constant: frac = S/T, for forks whose flag is the constant phase's share (default: %(default)s)",
    )


def _command_options(args: argparse.Namespace, load: str, data_file_list: str) -> cooldown_cmds.CommandOptions:
    return cooldown_cmds.CommandOptions(
        load=load,
        data_file_list=data_file_list,
        train_script=args.train_script,
        grad_acc_steps=args.grad_acc_steps,
        opt=args.opt,
        min_lr=args.min_lr,
        override_ckpt_opt_param=not args.no_override_ckpt_opt,
        extra_args=args.extra_args,
        frac_convention=args.frac_convention,
    )


# --- cmds ---------------------------------------------------------------------------------------


def add_cmds_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--load", required=True, help="checkpoint directory to resume from (LOAD)")
    parser.add_argument("--data-file-list", required=True, help="DATA_FILE_LIST for the cooldown")
    parser.add_argument("-S", "--checkpoint-iters", nargs="+", metavar="S", help="checkpoint iteration(s) to resume from")
    parser.add_argument("-R", "--cooldown-steps", nargs="+", metavar="R", help="cooldown length(s) in steps (grid S x R)")
    parser.add_argument("--checkpoint-ids", nargs="+", metavar="ID", help="labels of the -S checkpoints (default 1, 2, ...)")
    parser.add_argument(
        "--pairs", nargs="+", metavar="[ID:]S:R", help="explicit runs; an omitted ID is the previous one + 1"
    )
    parser.add_argument("--emit-sh", metavar="PATH", help="also write every block into one runnable bash script")
    _add_command_options(parser)


def run_cmds(args: argparse.Namespace) -> int:
    options = _command_options(args, args.load, args.data_file_list)
    runs = cooldown_cmds.select_runs(args.pairs, args.checkpoint_iters, args.cooldown_steps, args.checkpoint_ids)
    blocks = cooldown_cmds.render_blocks(runs, options)
    print("\n\n".join(blocks))
    if args.emit_sh:
        cooldown_cmds.write_script(args.emit_sh, blocks)
        print(f"# wrote {len(blocks)} command block(s) to {args.emit_sh}", file=sys.stderr)
    return 0


# --- milestones ---------------------------------------------------------------------------------


def _add_milestone_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ttokens", type=int, default=milestones.DEFAULT_TTOKENS, help="N: milestones 1..N-1 trillion tokens, N-1 rows (default: %(default)s)"
    )
    parser.add_argument(
        "--tokens-per-step",
        default=str(milestones.DEFAULT_TOKENS_PER_STEP),
        help="tokens per optimizer step; an integer or a product like 8192*6144 (default: 8192*6144)",
    )
    parser.add_argument(
        "--cooldown-percent",
        default=milestones.DEFAULT_COOLDOWN_PERCENT,
        help="cooldown length as a fraction of the final milestone's steps (default: %(default)s)",
    )
    parser.add_argument(
        "--round", type=int, default=milestones.DEFAULT_ROUND, help="round steps to this multiple, ties up (default: %(default)s)"
    )


def _build_milestones(args: argparse.Namespace) -> list[milestones.Milestone]:
    return milestones.build_milestones(
        ttokens=args.ttokens,
        tokens_per_step=milestones.parse_tokens_per_step(args.tokens_per_step),
        cooldown_percent=args.cooldown_percent,
        round_to=args.round,
    )


def add_milestones_arguments(parser: argparse.ArgumentParser) -> None:
    _add_milestone_arguments(parser)
    parser.add_argument("--out", default="checkpoints.tsv", help="TSV file to write; '-' prints only (default: %(default)s)")


def run_milestones(args: argparse.Namespace) -> int:
    table = _build_milestones(args)
    print(milestones.format_table(table), end="")
    if args.out != "-":
        milestones.write_table(args.out, table)
        print(f"# wrote {len(table)} milestone(s) to {args.out}", file=sys.stderr)
    return 0


# --- sweep --------------------------------------------------------------------------------------


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--load", required=True, help="checkpoint directory to resume from (LOAD)")
    parser.add_argument("--cool-R", dest="cool_r", type=int, required=True, help="cooldown length in steps")
    parser.add_argument("--emit-dir", default="cooldown_sweep", help="directory for the scripts (default: %(default)s)")
    parser.add_argument("--phase1-list", required=True, help="DATA_FILE_LIST for IDs up to --phase-split")
    parser.add_argument("--phase2-list", help="DATA_FILE_LIST for IDs after --phase-split")
    parser.add_argument(
        "--phase-split",
        type=int,
        default=cooldown_sweep.DEFAULT_PHASE_SPLIT,
        help="last ID trained on the phase-1 list (default: %(default)s)",
    )
    _add_milestone_arguments(parser)
    _add_command_options(parser)


def run_sweep(args: argparse.Namespace) -> int:
    table = _build_milestones(args)
    if args.phase2_list is None and any(row.id > args.phase_split for row in table):
        raise UserError(f"--phase2-list is required: IDs above --phase-split {args.phase_split} use the phase-2 data list")
    phase2 = args.phase2_list or args.phase1_list
    options = _command_options(args, args.load, args.phase1_list)
    _command_options(args, args.load, phase2)  # validates the phase-2 list too
    scripts = cooldown_sweep.write_sweep(
        table, args.cool_r, args.emit_dir, args.phase1_list, phase2, options, phase_split=args.phase_split
    )
    print(milestones.format_table(table), end="")
    for script in scripts:
        print(f"{script.path}\tresume_step={script.run.resume_step}\tcooldown_steps={script.run.cooldown_steps}")
    skipped = [row.id for row in table if row.steps_rollback <= 0]
    if skipped:
        print(f"# no rollback script for ID(s) {', '.join(map(str, skipped))}: rollback step <= 0", file=sys.stderr)
    return 0


# --- link ---------------------------------------------------------------------------------------


def run_link(args: argparse.Namespace) -> int:
    from orchestrator.campaign.cooldown_link import link_cooldown_checkpoint

    print(1 if link_cooldown_checkpoint(args.logs, args.exp_name, args.iter, args.cd_scale) else 0)
    return 0


# --- wiring -------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("cooldown", help="plan LR cooldowns: commands, milestone steps, sweeps, links")
    commands = parser.add_subparsers(dest="cooldown_command", metavar="SUBCOMMAND")
    parser.set_defaults(handler=lambda _args: (parser.print_help(), EXIT_USER_ERROR)[1])

    cmds = commands.add_parser(
        "cmds",
        help="Megatron-DeepSpeed commands cooling down from checkpoint S over R steps",
        description="Emit one command block per (S, R): TRAIN_ITERS = S + R and a cooldown starting exactly at S.",
    )
    add_cmds_arguments(cmds)
    cmds.set_defaults(handler=run_cmds)

    table = commands.add_parser(
        "milestones",
        help="token milestones -> checkpoint steps (TSV: id steps_mod steps_rollback)",
        description="Steps of the 1..N-1 trillion-token milestones, exact and rolled back by the cooldown.",
    )
    add_milestones_arguments(table)
    table.set_defaults(handler=run_milestones)

    sweep = commands.add_parser(
        "sweep",
        help="one cooldown script per milestone (exact and rollback step)",
        description="Write cooldown_id<ID>_exact.sh and cooldown_id<ID>_rollback.sh for every milestone.",
    )
    add_sweep_arguments(sweep)
    sweep.set_defaults(handler=run_sweep)

    link = commands.add_parser(
        "link",
        help="link a cooldown's checkpoint into place; prints 1 on success, else 0",
    )
    link.add_argument("logs", metavar="LOGS", help="logs directory of the campaign")
    link.add_argument("exp_name", metavar="EXP_NAME", help="experiment name")
    link.add_argument("iter", metavar="ITER", type=int, help="checkpoint iteration the cooldown starts from")
    link.add_argument("cd_scale", metavar="CD_SCALE", help="cooldown scale label")
    link.set_defaults(handler=run_link)


def standalone_main(
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
    argv: Sequence[str] | None,
    prog: str,
    description: str,
) -> int:
    """Entry point of a `helpers/` script: same flags and behaviour as the `orch cooldown` sub-command."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserError as error:
        print(error, file=sys.stderr)
        return EXIT_USER_ERROR
