"""NVIDIA Megatron-LM's learning-rate schedule (`megatron/core/optimizer_param_scheduler.py`).

`step` counts completed iterations: what the training log prints as "iteration N" and what a
checkpoint `iter_000N` resumes from. Megatron counts in samples (iterations x global batch size)
but every comparison scales both sides by the same batch size, so iterations give the same curve.

Edge cases, as in the source:
- warmup is linear from `--lr-warmup-init` and includes t = W (the LR at t = W is exactly `--lr`);
- `constant` holds `--lr` forever after warmup, even past the horizon;
- every other style returns `--min-lr` for t > `--lr-decay-iters` (default `--train-iters`);
- `inverse-square-root` is lr * sqrt(max(W, 1) / max(t, 1)), floored at `--min-lr`;
- `WSD` holds `--lr` until `--lr-decay-iters` - `--lr-wsd-decay-iters` (inclusive), then decays by
  `--lr-wsd-decay-style`: linear 1 - r, cosine, exponential 2 * 0.5**r - 1, minus_sqrt 1 - sqrt(r).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from orchestrator.planning.lr_schedules import common

FRAMEWORK = "megatron-lm"
DECAY_STYLES: tuple[str, ...] = ("constant", "linear", "cosine", "inverse-square-root", "WSD")
WSD_DECAY_STYLES: tuple[str, ...] = ("exponential", "linear", "cosine", "minus_sqrt")


def _warmup_steps(train_iters: int, lr_decay_iters: int | None, lr_warmup_iters: int,
                  lr_warmup_fraction: float | None) -> float:
    decay_steps = lr_decay_iters if lr_decay_iters is not None else train_iters
    if lr_warmup_fraction is not None:
        return lr_warmup_fraction * decay_steps
    return float(lr_warmup_iters)


def wsd_coefficient(style: str, ratio: float) -> float:
    """Share of (lr - min_lr) left after a fraction `ratio` of the WSD decay phase."""
    if style == "linear":
        return 1.0 - ratio
    if style == "cosine":
        return common.cosine_coefficient(ratio)
    if style == "exponential":
        return 2.0 * math.pow(0.5, ratio) - 1.0
    if style == "minus_sqrt":
        return 1.0 - math.sqrt(ratio)
    common.require_style(FRAMEWORK, "lr_wsd_decay_style", style, WSD_DECAY_STYLES)
    raise AssertionError("unreachable")


def _check(lr: float, min_lr: float, lr_warmup_init: float, decay_steps: float, warmup_steps: float,
           lr_decay_style: str, lr_wsd_decay_iters: int | None, lr_wsd_decay_style: str) -> None:
    """The constructor's assertions, as errors that name the flag."""
    common.require(min_lr >= 0.0, f"{FRAMEWORK}: --min-lr must be >= 0 (got {min_lr})")
    common.require(lr >= min_lr, f"{FRAMEWORK}: --lr ({lr}) must be >= --min-lr ({min_lr})")
    common.require(lr_warmup_init <= lr, f"{FRAMEWORK}: --lr-warmup-init ({lr_warmup_init}) must be <= --lr ({lr})")
    common.require(decay_steps > 0, f"{FRAMEWORK}: --lr-decay-iters / --train-iters must be > 0 (got {decay_steps})")
    common.require(
        warmup_steps < decay_steps,
        f"{FRAMEWORK}: warmup ({warmup_steps:g} iters) must be shorter than --lr-decay-iters ({decay_steps})",
    )
    common.require_style(FRAMEWORK, "lr_decay_style", lr_decay_style, DECAY_STYLES)
    if lr_decay_style == "WSD":
        common.require(lr_wsd_decay_iters is not None, f"{FRAMEWORK}: --lr-decay-style WSD needs --lr-wsd-decay-iters")
        common.require_style(FRAMEWORK, "lr_wsd_decay_style", lr_wsd_decay_style, WSD_DECAY_STYLES)


def lr_at(
    step: float,
    *,
    lr: float,
    train_iters: int,
    min_lr: float = 0.0,
    lr_decay_iters: int | None = None,
    lr_warmup_iters: int = 0,
    lr_warmup_fraction: float | None = None,
    lr_warmup_init: float = 0.0,
    lr_decay_style: str = "linear",
    lr_wsd_decay_iters: int | None = None,
    lr_wsd_decay_style: str = "exponential",
) -> float:
    """The LR Megatron-LM sets after `step` completed iterations."""
    decay_steps = lr_decay_iters if lr_decay_iters is not None else train_iters
    warmup_steps = _warmup_steps(train_iters, lr_decay_iters, lr_warmup_iters, lr_warmup_fraction)
    _check(lr, min_lr, lr_warmup_init, decay_steps, warmup_steps, lr_decay_style, lr_wsd_decay_iters,
           lr_wsd_decay_style)

    if warmup_steps > 0 and step <= warmup_steps:
        return lr_warmup_init + (lr - lr_warmup_init) * float(step) / float(warmup_steps)
    if lr_decay_style == "constant":
        return lr
    if step > decay_steps:
        return min_lr
    if lr_decay_style == "inverse-square-root":
        return max(min_lr, lr * max(warmup_steps, 1) ** 0.5 / max(step, 1) ** 0.5)

    decay_ratio = (step - warmup_steps) / (decay_steps - warmup_steps)
    if lr_decay_style == "linear":
        coefficient = 1.0 - decay_ratio
    elif lr_decay_style == "cosine":
        coefficient = common.cosine_coefficient(decay_ratio)
    else:  # WSD
        assert lr_wsd_decay_iters is not None
        anneal_start = decay_steps - lr_wsd_decay_iters
        if step <= anneal_start:
            coefficient = 1.0
        else:
            coefficient = wsd_coefficient(lr_wsd_decay_style, (step - anneal_start) / lr_wsd_decay_iters)
    return min_lr + coefficient * (lr - min_lr)


def curve(steps: Iterable[int], **params: object) -> list[tuple[int, float]]:
    return common.curve(lr_at, steps, dict(params))


def warmup_end(**params: object) -> float:
    """Last step of the warmup (0 without warmup)."""
    return _warmup_steps(
        int(params["train_iters"]),  # type: ignore[arg-type]
        params.get("lr_decay_iters"),  # type: ignore[arg-type]
        int(params.get("lr_warmup_iters", 0) or 0),  # type: ignore[arg-type]
        params.get("lr_warmup_fraction"),  # type: ignore[arg-type]
    )


def horizon(**params: object) -> int:
    """The last step the run trains (`--train-iters`), or the decay end if that is later."""
    train_iters = int(params["train_iters"])  # type: ignore[arg-type]
    decay_iters = params.get("lr_decay_iters")
    return max(train_iters, int(decay_iters)) if decay_iters is not None else train_iters  # type: ignore[arg-type]
