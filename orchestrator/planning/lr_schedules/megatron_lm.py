"""NVIDIA Megatron-LM's learning-rate schedule, step for step as the trainer computes it.

Ported from NVIDIA/Megatron-LM @d98e8a64: `megatron/core/optimizer_param_scheduler.py`
(`OptimizerParamScheduler.get_lr`), `megatron/training/training.py` (`get_optimizer_param_scheduler`,
which turns the flags into sample counts) and `megatron/training/arguments.py` (`validate_args`'s
iteration/sample checks). `tests/fixtures/lr_reference/` holds curves computed by that code itself
(`scripts/record-lr-reference.py`); every value here equals them to the last bit.

`step` counts completed iterations: what the training log prints as "iteration N" and what a checkpoint
`iter_000N` resumes from. The scheduler counts samples: every iteration adds `--global-batch-size`, and
the lengths are `--train-iters`/`--lr-decay-iters`/`--lr-warmup-iters` x the global batch size, or the
`--*-samples` flags as given. So `max(warmup, 1)` of inverse-square-root and a `--lr-warmup-fraction`
of the decay samples both depend on the batch size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from orchestrator.planning.lr_schedules import common

FRAMEWORK = "megatron-lm"
DECAY_STYLES: tuple[str, ...] = ("constant", "linear", "cosine", "inverse-square-root", "WSD")
WSD_DECAY_STYLES: tuple[str, ...] = ("exponential", "linear", "cosine", "minus_sqrt")


@dataclass(frozen=True)
class Scheduler:
    """The arguments `get_optimizer_param_scheduler` hands `OptimizerParamScheduler` (lengths in samples)."""

    init_lr: float
    max_lr: float
    min_lr: float
    warmup_steps: float
    decay_steps: int
    decay_style: str
    wsd_decay_steps: int | None
    wsd_decay_style: str
    samples_per_iteration: int

    def lr(self, num_steps: float) -> float:
        """`get_lr` after `num_steps` samples, in the source's order of operations."""
        max_lr, min_lr = self.max_lr, self.min_lr
        if self.warmup_steps > 0 and num_steps <= self.warmup_steps:
            return self.init_lr + ((max_lr - self.init_lr) * float(num_steps) / float(self.warmup_steps))
        if self.decay_style == "constant":
            return max_lr
        if num_steps > self.decay_steps:
            return min_lr
        if self.decay_style == "inverse-square-root":
            warmup_steps = max(self.warmup_steps, 1)
            lr = max_lr * warmup_steps**0.5 / (max(num_steps, 1) ** 0.5)
            return max(min_lr, lr)
        decay_ratio = float(num_steps - self.warmup_steps) / float(self.decay_steps - self.warmup_steps)
        delta_lr = max_lr - min_lr
        if self.decay_style == "linear":
            coeff = 1.0 - decay_ratio
        elif self.decay_style == "cosine":
            coeff = 0.5 * (math.cos(math.pi * decay_ratio) + 1.0)
        else:  # WSD
            assert self.wsd_decay_steps is not None
            anneal_start = self.decay_steps - self.wsd_decay_steps
            if num_steps <= anneal_start:
                coeff = 1.0
            else:
                coeff = wsd_coefficient(self.wsd_decay_style, float(num_steps - anneal_start) / float(self.wsd_decay_steps))
        return min_lr + coeff * delta_lr


def wsd_coefficient(style: str, ratio: float) -> float:
    """Share of (lr - min_lr) left after a fraction `ratio` of the WSD decay phase."""
    if style == "linear":
        return 1.0 - ratio
    if style == "cosine":
        return 0.5 * (math.cos(math.pi * ratio) + 1.0)
    if style == "exponential":
        return (2.0 * math.pow(0.5, ratio)) - 1.0
    if style == "minus_sqrt":
        return 1.0 - math.sqrt(ratio)
    common.require_style(FRAMEWORK, "lr_wsd_decay_style", style, WSD_DECAY_STYLES)
    raise AssertionError("unreachable")


def scheduler(
    *,
    lr: float,
    train_iters: int | None = None,
    train_samples: int | None = None,
    global_batch_size: int = 1,
    min_lr: float = 0.0,
    lr_decay_iters: int | None = None,
    lr_decay_samples: int | None = None,
    lr_warmup_iters: int = 0,
    lr_warmup_samples: int = 0,
    lr_warmup_fraction: float | None = None,
    lr_warmup_init: float = 0.0,
    lr_decay_style: str = "linear",
    lr_wsd_decay_iters: int | None = None,
    lr_wsd_decay_samples: int | None = None,
    lr_wsd_decay_style: str = "exponential",
) -> Scheduler:
    """Validate the flags as Megatron-LM does and build its scheduler; UserError names the flag."""
    common.check_length_mode(FRAMEWORK, train_iters, train_samples, lr_decay_iters, lr_decay_samples,
                             lr_warmup_iters, lr_warmup_samples, lr_warmup_fraction, global_batch_size)
    common.require_style(FRAMEWORK, "lr_decay_style", lr_decay_style, DECAY_STYLES)
    if train_iters:
        decay_steps = (lr_decay_iters if lr_decay_iters is not None else train_iters) * global_batch_size
        wsd_decay_steps = lr_wsd_decay_iters * global_batch_size if lr_wsd_decay_iters is not None else None
        warmup: float = lr_warmup_iters * global_batch_size
        wsd_flag = "--lr-wsd-decay-iters"
    else:
        assert train_samples is not None
        decay_steps = lr_decay_samples if lr_decay_samples is not None else train_samples
        wsd_decay_steps = lr_wsd_decay_samples
        warmup = lr_warmup_samples
        wsd_flag = "--lr-wsd-decay-samples"
    if lr_warmup_fraction is not None:
        warmup = lr_warmup_fraction * decay_steps
    # OptimizerParamScheduler.__init__'s assertions
    common.check_lr_range(FRAMEWORK, lr, min_lr)
    common.require(lr_warmup_init <= lr, f"{FRAMEWORK}: --lr-warmup-init ({lr_warmup_init}) must be <= --lr ({lr})")
    common.check_warmup_and_decay(FRAMEWORK, warmup, decay_steps)
    if lr_decay_style == "WSD":
        common.require(wsd_decay_steps is not None, f"{FRAMEWORK}: --lr-decay-style WSD needs {wsd_flag}")
        common.require_style(FRAMEWORK, "lr_wsd_decay_style", lr_wsd_decay_style, WSD_DECAY_STYLES)
    return Scheduler(float(lr_warmup_init), float(lr), float(min_lr), warmup, decay_steps, lr_decay_style,
                     wsd_decay_steps, lr_wsd_decay_style, global_batch_size)


def lr_at(step: float, **params: object) -> float:
    """The LR Megatron-LM sets after `step` completed iterations."""
    built = scheduler(**params)  # type: ignore[arg-type]
    return built.lr(step * built.samples_per_iteration)


def curve(steps: Iterable[int], **params: object) -> list[tuple[int, float]]:
    built = scheduler(**params)  # type: ignore[arg-type]
    return [(step, built.lr(step * built.samples_per_iteration)) for step in steps]


def warmup_end(**params: object) -> float:
    """Last iteration of the warmup (0 without warmup)."""
    built = scheduler(**params)  # type: ignore[arg-type]
    return built.warmup_steps / built.samples_per_iteration


def horizon(**params: object) -> int:
    """The last iteration the run trains, or the decay end if that is later."""
    built = scheduler(**params)  # type: ignore[arg-type]
    return common.horizon_iterations(params, built.decay_steps, built.samples_per_iteration)


# `lr_at`'s flags, for the CLI and `orch lr check` (the scheduler's keyword arguments)
lr_at.__signature__ = common.keyword_signature(scheduler)  # type: ignore[attr-defined]
