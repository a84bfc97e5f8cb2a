"""Megatron-DeepSpeed commands that cool a constant-LR run down, starting exactly at a checkpoint.

Resuming from checkpoint step S with a cooldown of R steps means TRAIN_ITERS = T = S + R and a
`--lr_constant_plus_cooldown_frac` f such that the decay covers exactly the last R steps.
Megatron-DeepSpeed reads f as the COOLDOWN's share of TRAIN_ITERS (its README: "set the cooldown
fraction with --lr_constant_plus_cooldown_frac; the default cooldown fraction is 0.05"), so
f = R / T ("cooldown" convention, the default). Some forks read it as the constant phase's share:
for them f = S / T ("constant" convention). An older tool always emitted S / T, which with upstream
Megatron-DeepSpeed starts the decay at step R instead of S.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from orchestrator.errors import UserError
from orchestrator.formulas.cooldown_frac import format_frac
from orchestrator.planning import write_atomically

FRAC_CONVENTIONS: tuple[str, ...] = ("cooldown", "constant")
MISSING_RUNS_MESSAGE = "Provide either --pairs OR both --checkpoint-iters and --cooldown-steps."
SCRIPT_PREAMBLE = "#!/usr/bin/env bash\nset -euo pipefail\n"


@dataclass(frozen=True)
class CooldownRun:
    """One cooldown: resume from checkpoint `resume_step` and decay over `cooldown_steps` steps."""

    id: int
    resume_step: int
    cooldown_steps: int

    @property
    def total_iters(self) -> int:
        return self.resume_step + self.cooldown_steps


@dataclass(frozen=True)
class CommandOptions:
    """Everything in a cooldown command that is the same for every (S, R) pair."""

    load: str
    data_file_list: str
    train_script: str = "train_alcf.sh"
    grad_acc_steps: int = 2
    opt: str = "ipex.fusedlamb"
    min_lr: str = "2e-5"
    override_ckpt_opt_param: bool = True
    extra_args: str = ""
    frac_convention: str = "cooldown"

    def __post_init__(self) -> None:
        if self.frac_convention not in FRAC_CONVENTIONS:
            raise UserError(f"--frac-convention must be one of {', '.join(FRAC_CONVENTIONS)}, got {self.frac_convention!r}")
        if not self.load:
            raise UserError("--load must name the checkpoint directory")
        if not self.data_file_list:
            raise UserError("--data-file-list must name the data file list")
        if self.grad_acc_steps <= 0:
            raise UserError(f"--grad-acc-steps must be a positive integer, got {self.grad_acc_steps}")
        try:
            float(self.min_lr)
        except ValueError:
            raise UserError(f"--min-lr must be a number, got {self.min_lr!r}") from None


def frac_share(run: CooldownRun, convention: str) -> tuple[int, int]:
    """(numerator, T) of the frac: the steps frac x TRAIN_ITERS must come back to."""
    numerator = run.cooldown_steps if convention == "cooldown" else run.resume_step
    return numerator, run.total_iters


def parse_positive_int(text: str, what: str) -> int:
    """An integer > 0 from user text; UserError naming `what` otherwise."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise UserError(f"{what}: {text!r} is not an integer") from None
    if value <= 0:
        raise UserError(f"{what}: must be a positive integer, got {value}")
    return value


def parse_pairs(entries: Iterable[str]) -> list[CooldownRun]:
    """`S:R` or `ID:S:R` entries; an omitted ID is the previous ID + 1 (the first is 1)."""
    runs: list[CooldownRun] = []
    next_id = 1
    for entry in entries:
        parts = entry.split(":")
        what = f"--pairs entry {entry!r}"
        if len(parts) == 2:
            run_id = next_id
            resume, cooldown = parts
        elif len(parts) == 3:
            run_id = parse_positive_int(parts[0], f"{what} (ID)")
            resume, cooldown = parts[1], parts[2]
        else:
            raise UserError(f"{what}: expected S:R or ID:S:R")
        runs.append(
            CooldownRun(
                id=run_id,
                resume_step=parse_positive_int(resume, f"{what} (S, the checkpoint iteration)"),
                cooldown_steps=parse_positive_int(cooldown, f"{what} (R, the cooldown steps)"),
            )
        )
        next_id = run_id + 1
    return runs


def grid_runs(
    checkpoint_iters: Sequence[str],
    cooldown_steps: Sequence[str],
    checkpoint_ids: Sequence[str] | None = None,
) -> list[CooldownRun]:
    """Every S x R combination; a run's ID labels its checkpoint S (default 1, 2, ... in -S order)."""
    resumes = [parse_positive_int(text, "-S/--checkpoint-iters") for text in checkpoint_iters]
    cooldowns = [parse_positive_int(text, "-R/--cooldown-steps") for text in cooldown_steps]
    if checkpoint_ids:
        if len(checkpoint_ids) != len(resumes):
            raise UserError(
                f"--checkpoint-ids has {len(checkpoint_ids)} entries but -S/--checkpoint-iters has {len(resumes)};"
                " give one ID per checkpoint"
            )
        ids = [parse_positive_int(text, "--checkpoint-ids") for text in checkpoint_ids]
    else:
        ids = list(range(1, len(resumes) + 1))
    return [CooldownRun(run_id, resume, cooldown) for run_id, resume in zip(ids, resumes) for cooldown in cooldowns]


def select_runs(
    pairs: Sequence[str] | None,
    checkpoint_iters: Sequence[str] | None,
    cooldown_steps: Sequence[str] | None,
    checkpoint_ids: Sequence[str] | None = None,
) -> list[CooldownRun]:
    """The runs the user asked for: from --pairs, or the -S x -R grid (not both)."""
    if pairs:
        if checkpoint_iters or cooldown_steps or checkpoint_ids:
            raise UserError("--pairs cannot be combined with --checkpoint-iters/--cooldown-steps/--checkpoint-ids")
        return parse_pairs(pairs)
    if checkpoint_iters and cooldown_steps:
        return grid_runs(checkpoint_iters, cooldown_steps, checkpoint_ids)
    raise UserError(MISSING_RUNS_MESSAGE)


def render_block(run: CooldownRun, options: CommandOptions) -> str:
    """The annotated command block for one run: a `# id=...` header line, then the command."""
    numerator, total = frac_share(run, options.frac_convention)
    frac = format_frac(numerator, total)
    share = "R/T, the cooldown share" if options.frac_convention == "cooldown" else "S/T, the constant-LR share"
    header = (
        f"# id={run.id} resume_step={run.resume_step} cooldown_steps={run.cooldown_steps}"
        f" total_iters={total} frac={frac} frac_convention={options.frac_convention} ({share})"
    )
    if not options.override_ckpt_opt_param:
        header += ("\n# without OVERRIDE_CKPT_OPT_PARAM the LR, --min-lr, warmup, decay length and style come from the"
                   "\n# checkpoint (--use-checkpoint-opt_param-scheduler): the pretrain must have run LR_DECAY_STYLE=constant")
    env = ["LR_DECAY_STYLE=constant", f"OPT={shlex.quote(options.opt)}"]
    if options.override_ckpt_opt_param:
        env.append("OVERRIDE_CKPT_OPT_PARAM=1")
    env += [
        f"TRAIN_ITERS={total}",
        f"GRAD_ACC_STEPS={options.grad_acc_steps}",
        f"LOAD={shlex.quote(options.load)}",
        f"DATA_FILE_LIST={shlex.quote(options.data_file_list)}",
        f"bash {shlex.quote(options.train_script)}",
    ]
    # train_alcf.sh adds --use-checkpoint-opt_param-scheduler without OVERRIDE_CKPT_OPT_PARAM, and the
    # trainer refuses it together with --override-opt_param-scheduler: the two go together or not at all.
    arguments = ["--override-opt_param-scheduler"] if options.override_ckpt_opt_param else []
    arguments += [
        f"--min-lr={options.min_lr}",
        "--lr_constant_plus_cooldown",
        f"--lr_constant_plus_cooldown_frac={frac}",
    ]
    if options.extra_args.strip():
        arguments.append(options.extra_args.strip())  # a shell fragment: passed through verbatim
    lines = env + ["  " + argument for argument in arguments]
    block = header + "\n" + " \\\n".join(lines)
    check_block(block, run, options.frac_convention)
    return block


CHECK_BATCH_SIZES: tuple[int, ...] = (1, 3, 512, 4096)  # the block must be right whatever the run's global batch


def check_block(block: str, run: CooldownRun, convention: str) -> None:
    """Run the block through the wrapper and trainer checks; its cooldown must start at the resume step S."""
    from orchestrator.planning.lr_schedules import alcf_launch

    env, arguments = alcf_launch.split_command(block)
    for batch in CHECK_BATCH_SIZES:
        try:
            trained = alcf_launch.trainer_run(alcf_launch.wrapper_argv(env, arguments, batch))
        except UserError as error:
            raise UserError(f"cooldown id={run.id} (S={run.resume_step}, R={run.cooldown_steps}): {error}") from None
        scheduler = trained.scheduler()
        if convention != "cooldown":
            continue  # the constant-share convention is for forks whose scheduler is not modelled here
        start = (scheduler.decay_steps - int(scheduler.constant_plus_cooldown_steps)) / batch
        if start != run.resume_step or scheduler.decay_style != "constant" or not scheduler.constant_plus_cooldown:
            raise UserError(
                f"cooldown id={run.id}: with these arguments Megatron-DeepSpeed would cool down from iteration"
                f" {start:g} (style {scheduler.decay_style}), not from the resume step {run.resume_step};"
                " check --extra-args for LR flags (e.g. --lr-decay-iters, --lr-decay-style)"
            )


def render_blocks(runs: Iterable[CooldownRun], options: CommandOptions) -> list[str]:
    return [render_block(run, options) for run in runs]


def render_script(blocks: Sequence[str]) -> str:
    """A bash script running every block in turn (stopping at the first failure)."""
    return SCRIPT_PREAMBLE + "\n" + "\n\n".join(blocks) + "\n"


def write_script(path: str, blocks: Sequence[str]) -> None:
    write_atomically(path, render_script(blocks), executable=True)
