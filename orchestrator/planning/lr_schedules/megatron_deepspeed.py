"""Megatron-DeepSpeed's learning-rate schedule (argonne-lcf fork, `megatron/optimizer_param_scheduler.py`).

`step` counts completed iterations, as in `megatron_lm`. Differences from Megatron-LM:
- warmup starts from 0 (there is no `--lr-warmup-init`); the LR at t = W is exactly `--lr`;
- no WSD style; instead `constant` with `--lr_constant_plus_cooldown` holds `--lr` until the last
  frac * T steps (T = `--train-iters`, frac = `--lr_constant_plus_cooldown_frac`, the COOLDOWN's share,
  default 0.05) and then follows min + (lr - min) * (1 - sqrt(r)), r going 0 -> 1 over those steps;
  past T it stays at `--min-lr`. (The stored copies of the fork predate this option: the formula is the
  one its README and the campaign tooling describe, not read from source.)
- `infinite-cosine` / `infinite-inv-square-root` (fork's constructor arguments `constant_lr`,
  `lr_cooldown_steps`, `lr_constant_steps`, `timescale`): a cooldown from `--lr` towards `constant_lr`
  ending at step `lr_cooldown_iters`, a plateau at `constant_lr` for `lr_constant_iters` steps, then an
  exponential decay to `--min-lr` at the decay horizon. As in the source, the cooldown tests the style
  against "infinite_cosine" (underscore), so BOTH hyphenated styles take the inverse-sqrt branch:
  lr - (lr - constant_lr) * f(1) * f(r) with f(t) = 1 / sqrt(1 + timescale * t) - 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from orchestrator.planning.lr_schedules import common

FRAMEWORK = "megatron-deepspeed"
DECAY_STYLES: tuple[str, ...] = (
    "constant", "linear", "cosine", "inverse-square-root", "infinite-cosine", "infinite-inv-square-root",
)
INFINITE_STYLES: tuple[str, ...] = ("infinite-cosine", "infinite-inv-square-root")
DEFAULT_COOLDOWN_FRAC = 0.05


def _decay_steps(train_iters: int, lr_decay_iters: int | None) -> int:
    return lr_decay_iters if lr_decay_iters is not None else train_iters


def _warmup_steps(decay_steps: int, lr_warmup_iters: int, lr_warmup_fraction: float | None) -> float:
    if lr_warmup_fraction is not None:
        return lr_warmup_fraction * decay_steps
    return float(lr_warmup_iters)


def cooldown_start(train_iters: int, lr_constant_plus_cooldown_frac: float = DEFAULT_COOLDOWN_FRAC) -> float:
    """Last step at `--lr` of a constant-plus-cooldown run: T - frac * T."""
    return train_iters - lr_constant_plus_cooldown_frac * train_iters


def _infinite_lr(step: float, lr: float, min_lr: float, warmup_steps: float, decay_steps: int,
                 constant_lr: float, lr_cooldown_iters: int, lr_constant_iters: int, timescale: float) -> float:
    since_warmup = step - warmup_steps
    cooldown_steps = lr_cooldown_iters - warmup_steps
    if since_warmup <= cooldown_steps:
        ratio = since_warmup / cooldown_steps

        def inverse_sqrt_shape(t: float) -> float:
            return 1.0 / math.sqrt(1.0 + timescale * t) - 1.0

        value = lr - (lr - constant_lr) * inverse_sqrt_shape(1.0) * inverse_sqrt_shape(ratio)
    else:
        since_cooldown = since_warmup - cooldown_steps
        if since_cooldown <= lr_constant_iters:
            value = constant_lr
        else:
            decay_length = decay_steps - warmup_steps - cooldown_steps - lr_constant_iters
            rate = -math.log(min_lr / constant_lr) / decay_length
            value = constant_lr * math.exp(-rate * (since_cooldown - lr_constant_iters))
    return max(value, min_lr)


def lr_at(
    step: float,
    *,
    lr: float,
    train_iters: int,
    min_lr: float = 0.0,
    lr_decay_iters: int | None = None,
    lr_warmup_iters: int = 0,
    lr_warmup_fraction: float | None = None,
    lr_decay_style: str = "linear",
    lr_constant_plus_cooldown: bool = False,
    lr_constant_plus_cooldown_frac: float = DEFAULT_COOLDOWN_FRAC,
    constant_lr: float | None = None,
    lr_cooldown_iters: int | None = None,
    lr_constant_iters: int = 0,
    timescale: float = 10.0,
) -> float:
    """The LR Megatron-DeepSpeed sets after `step` completed iterations."""
    decay_steps = _decay_steps(train_iters, lr_decay_iters)
    warmup_steps = _warmup_steps(decay_steps, lr_warmup_iters, lr_warmup_fraction)
    common.require(min_lr >= 0.0, f"{FRAMEWORK}: --min-lr must be >= 0 (got {min_lr})")
    common.require(lr >= min_lr, f"{FRAMEWORK}: --lr ({lr}) must be >= --min-lr ({min_lr})")
    common.require(decay_steps > 0, f"{FRAMEWORK}: --lr-decay-iters / --train-iters must be > 0 (got {decay_steps})")
    common.require(
        warmup_steps < decay_steps,
        f"{FRAMEWORK}: warmup ({warmup_steps:g} iters) must be shorter than --lr-decay-iters ({decay_steps})",
    )
    common.require_style(FRAMEWORK, "lr_decay_style", lr_decay_style, DECAY_STYLES)
    if lr_constant_plus_cooldown:
        common.require(
            0.0 < lr_constant_plus_cooldown_frac <= 1.0,
            f"{FRAMEWORK}: --lr_constant_plus_cooldown_frac must be in (0, 1] (got {lr_constant_plus_cooldown_frac})",
        )

    if warmup_steps > 0 and step <= warmup_steps:
        return lr * float(step) / float(warmup_steps)

    if lr_decay_style == "constant":
        if not lr_constant_plus_cooldown:
            return lr
        start = cooldown_start(train_iters, lr_constant_plus_cooldown_frac)
        if step <= start:
            return lr
        ratio = min(1.0, (step - start) / (lr_constant_plus_cooldown_frac * train_iters))
        return min_lr + (lr - min_lr) * (1.0 - math.sqrt(ratio))

    if step > decay_steps:
        return min_lr
    if lr_decay_style == "inverse-square-root":
        return max(min_lr, lr * max(warmup_steps, 1) ** 0.5 / max(step, 1) ** 0.5)
    if lr_decay_style in INFINITE_STYLES:
        common.require(
            constant_lr is not None and lr_cooldown_iters is not None,
            f"{FRAMEWORK}: --lr-decay-style {lr_decay_style} needs --constant-lr and --lr-cooldown-iters",
        )
        assert constant_lr is not None and lr_cooldown_iters is not None
        common.require(
            min_lr < constant_lr <= lr,
            f"{FRAMEWORK}: --constant-lr ({constant_lr}) must be > --min-lr ({min_lr}) and <= --lr ({lr})",
        )
        common.require(min_lr > 0.0, f"{FRAMEWORK}: {lr_decay_style} decays exponentially to --min-lr, which must be > 0")
        common.require(
            lr_cooldown_iters > warmup_steps,
            f"{FRAMEWORK}: --lr-cooldown-iters ({lr_cooldown_iters}) must be after the warmup ({warmup_steps:g})",
        )
        return _infinite_lr(step, lr, min_lr, warmup_steps, decay_steps, constant_lr, lr_cooldown_iters,
                            lr_constant_iters, timescale)

    decay_ratio = (step - warmup_steps) / (decay_steps - warmup_steps)
    coefficient = 1.0 - decay_ratio if lr_decay_style == "linear" else common.cosine_coefficient(decay_ratio)
    return min_lr + coefficient * (lr - min_lr)


def curve(steps: Iterable[int], **params: object) -> list[tuple[int, float]]:
    return common.curve(lr_at, steps, dict(params))


def warmup_end(**params: object) -> float:
    decay_steps = _decay_steps(int(params["train_iters"]), params.get("lr_decay_iters"))  # type: ignore[arg-type]
    return _warmup_steps(
        decay_steps,
        int(params.get("lr_warmup_iters", 0) or 0),  # type: ignore[arg-type]
        params.get("lr_warmup_fraction"),  # type: ignore[arg-type]
    )


def horizon(**params: object) -> int:
    train_iters = int(params["train_iters"])  # type: ignore[arg-type]
    decay_iters = params.get("lr_decay_iters")
    return max(train_iters, int(decay_iters)) if decay_iters is not None else train_iters  # type: ignore[arg-type]
