"""Megatron-DeepSpeed's learning-rate schedule, step for step as the trainer computes it.

Ported from argonne-lcf/Megatron-DeepSpeed @ffa3456d: `megatron/optimizer_param_scheduler.py`
(`get_lr`), `megatron/training.py` (`get_optimizer_param_scheduler`; `train` updates the consumed tokens
after each step) and `megatron/arguments.py` (flags, defaults, `validate_args`). Curves recorded from
that code by `scripts/record-lr-reference.py` are in `tests/fixtures/lr_reference/`.

`step` counts completed iterations. The scheduler counts samples (every iteration adds the global batch
size) and, with `--lr-decay-tokens`, tokens: the token count it sees at iteration i is what the i-1
iterations before consumed (`--seq-length` per sample), since `train` adds them after the step.

What differs from Megatron-LM, all as in the source:
- warmup starts from 0 (no `--lr-warmup-init`);
- `constant` with `--lr_constant_plus_cooldown` holds `--lr` until the last
  int(`--lr_constant_plus_cooldown_frac` x decay samples) samples of the `--lr-decay-iters` horizon
  (default `--train-iters`), then follows min + (lr - min)(1 - sqrt(r)); from the horizon on, `--min-lr`;
- `infinite-cosine` / `infinite-inv-square-root`: from `--lr` down to `--constant-lr` over
  `--lr-cooldown-fraction` of the decay samples, hold it for `--lr-constant-fraction`, then decay
  exponentially to `--min-lr` at the horizon. The trainer never passes `--timescale` on: the inverse
  square root always uses the constructor's default, 10.

Settings the trainer would crash on part-way (token-based cooldowns, which read attributes the scheduler
does not have; token-based decay with no warmup to take its token count from; an exponential decay to
`--min-lr` 0) are refused up front.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from orchestrator.planning.lr_schedules import common

FRAMEWORK = "megatron-deepspeed"
DECAY_STYLES: tuple[str, ...] = (
    "constant", "linear", "cosine", "inverse-square-root", "infinite-cosine", "infinite-inv-square-root",
)
INFINITE_STYLES: tuple[str, ...] = ("infinite-cosine", "infinite-inv-square-root")
DEFAULT_COOLDOWN_FRAC = 0.05  # --lr_constant_plus_cooldown_frac
DEFAULT_CONSTANT_LR = 0.00011  # --constant-lr
DEFAULT_CONSTANT_FRACTION = 0.001  # --lr-constant-fraction
DEFAULT_COOLDOWN_FRACTION = 0.65  # --lr-cooldown-fraction
SCHEDULER_TIMESCALE = 10.0  # OptimizerParamScheduler's default; training.py passes no timescale


@dataclass(frozen=True)
class Scheduler:
    """What `get_optimizer_param_scheduler` builds (lengths in samples), plus the token inputs."""

    max_lr: float
    min_lr: float
    warmup_steps: float
    decay_steps: int
    decay_style: str
    constant_plus_cooldown: bool
    constant_plus_cooldown_steps: float
    constant_lr: float
    constant_steps: float
    cooldown_steps: float
    decay_tokens: int | None
    warmup_tokens: int | None
    tokens_per_sample: int
    samples_per_iteration: int

    def tokens_at(self, step: int) -> int:
        """The scheduler's token count at iteration `step`: what the iterations before it consumed."""
        return max(step - 1, 0) * self.samples_per_iteration * self.tokens_per_sample

    def warmup_tokens_at(self, step: float) -> int | None:
        """`lr_warmup_tokens` as `get_lr` has left it by iteration `step`: with token-based decay and no
        `--lr-warmup-tokens`, the token count of the iteration whose sample count equals the warmup (that
        iteration itself still takes the sample-based branch)."""
        if self.warmup_tokens is not None or self.decay_tokens is None:
            return self.warmup_tokens
        boundary = self.warmup_steps / self.samples_per_iteration
        if self.warmup_steps > 0 and boundary.is_integer() and step > boundary:
            return self.tokens_at(int(boundary))
        return None

    def lr(self, step: float) -> float:
        """`get_lr` at iteration `step`, in the source's order of operations."""
        num_steps = step * self.samples_per_iteration
        num_tokens = self.tokens_at(int(step))
        warmup_tokens = self.warmup_tokens_at(step)
        max_lr, min_lr = self.max_lr, self.min_lr
        if warmup_tokens is None:
            if self.warmup_steps > 0 and num_steps <= self.warmup_steps:
                return max_lr * float(num_steps) / float(self.warmup_steps)
        elif warmup_tokens > 0 and num_tokens <= warmup_tokens:
            return max_lr * float(num_tokens) / float(warmup_tokens)

        if self.decay_style == "constant":
            if not self.constant_plus_cooldown:
                return max_lr
            since_warmup = num_steps - self.warmup_steps
            total = self.decay_steps - self.warmup_steps
            if since_warmup >= total:
                return min_lr
            cooldown = int(self.constant_plus_cooldown_steps)
            if since_warmup < total - cooldown:
                return max_lr
            ratio = (since_warmup - (total - cooldown)) / float(cooldown)
            ratio = min(max(ratio, 0.0), 1.0)
            return min_lr + (max_lr - min_lr) * (1.0 - math.sqrt(ratio))

        if self.decay_tokens is None:
            if num_steps > self.decay_steps:
                return min_lr
        elif num_tokens > self.decay_tokens:
            return min_lr

        if self.decay_style == "inverse-square-root":
            if warmup_tokens is None:
                lr = max_lr * max(self.warmup_steps, 1) ** 0.5 / (max(num_steps, 1) ** 0.5)
            else:
                lr = max_lr * max(warmup_tokens, 1) ** 0.5 / (max(num_tokens, 1) ** 0.5)
            return max(min_lr, lr)

        if self.decay_style in INFINITE_STYLES:
            return max(self._infinite_lr(num_steps), min_lr)

        if self.decay_tokens is None:
            decay_ratio = float(num_steps - self.warmup_steps) / float(self.decay_steps - self.warmup_steps)
        else:
            assert warmup_tokens is not None
            decay_ratio = float(num_tokens - warmup_tokens) / float(self.decay_tokens - warmup_tokens)
        delta_lr = max_lr - min_lr
        if self.decay_style == "linear":
            coeff = 1.0 - decay_ratio
        else:  # cosine
            coeff = 0.5 * (math.cos(math.pi * decay_ratio) + 1.0)
        return min_lr + coeff * delta_lr

    def _infinite_lr(self, num_steps: float) -> float:
        delta_lr = self.max_lr - self.constant_lr
        since_warmup = num_steps - self.warmup_steps
        if since_warmup <= self.cooldown_steps:
            cooldown_ratio = float(since_warmup) / float(self.cooldown_steps)
            if self.decay_style == "infinite-cosine":
                return self.constant_lr + delta_lr * (0.5 * (math.cos(math.pi * cooldown_ratio) + 1.0))
            return self.max_lr - delta_lr * (_inverse_sqrt_shape(cooldown_ratio) / _inverse_sqrt_shape(1))
        since_cooldown = since_warmup - self.cooldown_steps
        if since_cooldown <= self.constant_steps:
            return self.constant_lr
        end = self.decay_steps - self.warmup_steps - self.cooldown_steps - self.constant_steps
        exp_factor = -math.log(self.min_lr / self.constant_lr) / end
        return self.constant_lr * math.exp(-exp_factor * (since_cooldown - self.constant_steps))


def _inverse_sqrt_shape(t: float) -> float:
    return (1 / math.sqrt(1 + (SCHEDULER_TIMESCALE * t))) - 1


def scheduler(
    *,
    lr: float,
    train_iters: int | None = None,
    train_samples: int | None = None,
    global_batch_size: int = 1,
    seq_length: int | None = None,
    min_lr: float = 0.0,
    lr_decay_iters: int | None = None,
    lr_decay_samples: int | None = None,
    lr_decay_tokens: int | None = None,
    lr_warmup_iters: int = 0,
    lr_warmup_samples: int = 0,
    lr_warmup_tokens: int | None = None,
    lr_warmup_fraction: float | None = None,
    lr_decay_style: str = "linear",
    lr_constant_plus_cooldown: bool = False,
    lr_constant_plus_cooldown_frac: float = DEFAULT_COOLDOWN_FRAC,
    constant_lr: float = DEFAULT_CONSTANT_LR,
    lr_constant_fraction: float = DEFAULT_CONSTANT_FRACTION,
    lr_cooldown_fraction: float = DEFAULT_COOLDOWN_FRACTION,
    timescale: float | None = None,
) -> Scheduler:
    """Validate the flags as Megatron-DeepSpeed does and build its scheduler; UserError names the flag."""
    common.require(
        timescale is None,
        f"{FRAMEWORK}: --timescale is parsed but training.py never passes it to the scheduler, which always"
        f" uses {SCHEDULER_TIMESCALE:g}; drop the flag",
    )
    common.check_length_mode(FRAMEWORK, train_iters, train_samples, lr_decay_iters, lr_decay_samples,
                             lr_warmup_iters, lr_warmup_samples, lr_warmup_fraction, global_batch_size)
    common.require_style(FRAMEWORK, "lr_decay_style", lr_decay_style, DECAY_STYLES)
    if train_iters:
        decay_steps = (lr_decay_iters if lr_decay_iters is not None else train_iters) * global_batch_size
        warmup: float = lr_warmup_iters * global_batch_size
    else:
        assert train_samples is not None
        decay_steps = lr_decay_samples if lr_decay_samples is not None else train_samples
        warmup = lr_warmup_samples
    if lr_warmup_fraction is not None:
        warmup = lr_warmup_fraction * decay_steps
    constant_steps = lr_constant_fraction * decay_steps
    cooldown_plus_steps = lr_constant_plus_cooldown_frac * decay_steps if lr_constant_plus_cooldown else 0
    cooldown_steps = lr_cooldown_fraction * decay_steps

    common.check_lr_range(FRAMEWORK, lr, min_lr)
    common.check_warmup_and_decay(FRAMEWORK, warmup, decay_steps)
    common.require(constant_steps < decay_steps,
                   f"{FRAMEWORK}: --lr-constant-fraction ({lr_constant_fraction}) must be < 1")
    tokens = lr_decay_tokens is not None or lr_warmup_tokens is not None
    common.require(not tokens or (seq_length is not None and seq_length > 0),
                   f"{FRAMEWORK}: --lr-decay-tokens / --lr-warmup-tokens count tokens: give --seq-length")
    if lr_decay_style == "constant" and lr_constant_plus_cooldown:
        common.require(lr_decay_tokens is None,
                       f"{FRAMEWORK}: --lr_constant_plus_cooldown with --lr-decay-tokens crashes the trainer"
                       " (the scheduler has no lr_constant_plus_cooldown_tokens); count the decay in iterations")
    if lr_decay_style in INFINITE_STYLES:
        common.require(lr_decay_tokens is None,
                       f"{FRAMEWORK}: --lr-decay-style {lr_decay_style} with --lr-decay-tokens crashes the trainer"
                       " (the scheduler has no constant_tokens); count the decay in iterations")
        common.require(min_lr < constant_lr <= lr,
                       f"{FRAMEWORK}: --constant-lr ({constant_lr}) must be > --min-lr ({min_lr}) and <= --lr ({lr})")
        common.require(min_lr > 0.0,
                       f"{FRAMEWORK}: --lr-decay-style {lr_decay_style} decays exponentially to --min-lr, which must be > 0")
        common.require(cooldown_steps > 0, f"{FRAMEWORK}: --lr-cooldown-fraction must be > 0 (got {lr_cooldown_fraction})")
    if lr_decay_tokens is not None and lr_warmup_tokens is None:
        boundary = warmup / global_batch_size
        common.require(
            warmup > 0 and float(boundary).is_integer(),
            f"{FRAMEWORK}: --lr-decay-tokens without --lr-warmup-tokens takes the warmup's token count at the"
            " iteration that ends the warmup; this warmup has none (give --lr-warmup-tokens)",
        )
    return Scheduler(
        float(lr), min_lr, warmup, decay_steps, lr_decay_style, lr_constant_plus_cooldown, cooldown_plus_steps,
        constant_lr, constant_steps, cooldown_steps, lr_decay_tokens, lr_warmup_tokens, seq_length or 0,
        global_batch_size,
    )


def lr_at(step: float, **params: object) -> float:
    """The LR Megatron-DeepSpeed sets after `step` completed iterations."""
    return scheduler(**params).lr(step)  # type: ignore[arg-type]


def curve(steps: Iterable[int], **params: object) -> list[tuple[int, float]]:
    built = scheduler(**params)  # type: ignore[arg-type]
    return [(step, built.lr(step)) for step in steps]


def warmup_end(**params: object) -> float:
    """Last iteration of the warmup (0 without warmup)."""
    built = scheduler(**params)  # type: ignore[arg-type]
    return built.warmup_steps / built.samples_per_iteration


def horizon(**params: object) -> int:
    built = scheduler(**params)  # type: ignore[arg-type]
    return common.horizon_iterations(params, built.decay_steps, built.samples_per_iteration)


def cooldown_start(**params: object) -> float:
    """Last iteration at `--lr` of a constant-plus-cooldown run (whole samples, as the trainer truncates)."""
    built = scheduler(**params)  # type: ignore[arg-type]
    return (built.decay_steps - int(built.constant_plus_cooldown_steps)) / built.samples_per_iteration


lr_at.__signature__ = common.keyword_signature(scheduler)  # type: ignore[attr-defined]
