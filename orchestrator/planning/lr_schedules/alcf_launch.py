"""What argonne-lcf/Megatron-DeepSpeed's `train_alcf.sh` hands the trainer, and whether the trainer accepts it.

A model of three pieces of argonne-lcf/Megatron-DeepSpeed @ffa3456d, enough to check a cooldown command
before it costs a day in the queue:
- `ALCF/helpers.sh`: `LR` (default 0.0002), `LR_DECAY_STYLE` (cosine), `LR_WARMUP_FRAC` (0.05) and
  `LR_DECAY_ITERS` become `--lr`, `--lr-decay-style`, `--lr-warmup-fraction`, `--lr-decay-iters`;
  without `OVERRIDE_CKPT_OPT_PARAM` it adds `--use-checkpoint-opt_param-scheduler`; the script's own
  arguments (`custom_args=("$@")`) come next, and `--train-iters=${TRAIN_ITERS}` and
  `--global-batch-size` after them, so those two always win;
- `megatron/arguments.py`: the flags the LR schedule reads, their defaults, argparse's "last one wins";
- `OptimizerParamScheduler.__init__`: "both override and use-checkpoint are set" stops the run.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orchestrator.errors import UserError
from orchestrator.planning.lr_schedules import megatron_deepspeed

WRAPPER_DEFAULTS: dict[str, str] = {"LR": "0.0002", "LR_DECAY_STYLE": "cosine", "LR_WARMUP_FRAC": "0.05"}


@dataclass(frozen=True)
class TrainerRun:
    """The schedule flags the trainer ends up with, and how it treats the checkpoint's scheduler state."""

    schedule: dict[str, object]
    override_opt_param_scheduler: bool
    use_checkpoint_opt_param_scheduler: bool

    def scheduler(self) -> megatron_deepspeed.Scheduler:
        return megatron_deepspeed.scheduler(**self.schedule)  # type: ignore[arg-type]


def wrapper_argv(env: Mapping[str, str], arguments: Sequence[str], global_batch_size: int) -> list[str]:
    """The trainer's argv, as `ALCF/helpers.sh` assembles it from the environment and the script's arguments."""
    values = {**WRAPPER_DEFAULTS, **env}
    argv: list[str] = []
    if not env.get("OVERRIDE_CKPT_OPT_PARAM"):
        argv.append("--use-checkpoint-opt_param-scheduler")
    argv += ["--lr", values["LR"], "--lr-decay-style", values["LR_DECAY_STYLE"],
             "--lr-warmup-fraction", values["LR_WARMUP_FRAC"]]
    if env.get("LR_DECAY_ITERS"):
        argv += ["--lr-decay-iters", env["LR_DECAY_ITERS"]]
    argv += list(arguments)
    argv += [f"--global-batch-size={global_batch_size}"]
    if env.get("TRAIN_ITERS"):
        argv += [f"--train-iters={env['TRAIN_ITERS']}"]
    return argv


def _schedule_parser() -> argparse.ArgumentParser:
    """The schedule flags of megatron/arguments.py with their types and defaults; other flags pass through."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for flag, kind in (
        ("--lr", float), ("--min-lr", float), ("--train-iters", int), ("--train-samples", int),
        ("--global-batch-size", int), ("--seq-length", int), ("--lr-decay-iters", int), ("--lr-decay-samples", int),
        ("--lr-decay-tokens", int), ("--lr-warmup-iters", int), ("--lr-warmup-samples", int),
        ("--lr-warmup-tokens", int), ("--lr-warmup-fraction", float), ("--lr_constant_plus_cooldown_frac", float),
        ("--constant-lr", float), ("--lr-constant-fraction", float), ("--lr-cooldown-fraction", float),
        ("--timescale", float),
    ):
        parser.add_argument(flag, type=kind, dest=flag.lstrip("-").replace("-", "_"))
    parser.add_argument("--lr-decay-style", choices=megatron_deepspeed.DECAY_STYLES)
    for flag in ("--lr_constant_plus_cooldown", "--override-opt_param-scheduler", "--use-checkpoint-opt_param-scheduler"):
        parser.add_argument(flag, action="store_true", dest=flag.lstrip("-").replace("-", "_"))
    return parser


def trainer_run(argv: Sequence[str]) -> TrainerRun:
    """Parse the trainer's argv as Megatron-DeepSpeed does and apply its checks; UserError says which failed."""
    try:
        parsed, _others = _schedule_parser().parse_known_args(list(argv))
    except SystemExit:
        raise UserError(f"Megatron-DeepSpeed would not parse: {shlex.join(argv)}") from None
    values = {key: value for key, value in vars(parsed).items() if value is not None}
    override = bool(values.pop("override_opt_param_scheduler", False))
    use_checkpoint = bool(values.pop("use_checkpoint_opt_param_scheduler", False))
    if override and use_checkpoint:
        raise UserError("Megatron-DeepSpeed stops at start-up: --override-opt_param-scheduler and "
                        "--use-checkpoint-opt_param-scheduler are both set ('both override and use-checkpoint are set')")
    if not values.get("lr_constant_plus_cooldown"):
        values.pop("lr_constant_plus_cooldown", None)
    run = TrainerRun(values, override, use_checkpoint)
    run.scheduler()  # validate_args and the scheduler's own assertions
    return run


def split_command(block: str) -> tuple[dict[str, str], list[str]]:
    """(environment, script arguments) of a `VAR=value ... bash SCRIPT args...` command (comments skipped)."""
    words = shlex.split(" ".join(line for line in block.replace("\\\n", " ").splitlines()
                                 if not line.lstrip().startswith("#")))
    env: dict[str, str] = {}
    index = 0
    while index < len(words) and "=" in words[index] and not words[index].startswith("-"):
        name, _, value = words[index].partition("=")
        env[name] = value
        index += 1
    if index < len(words) and words[index] == "bash":
        index += 2  # bash SCRIPT
    return env, words[index:]
