"""What the per-framework LR schedules share: input checks, decay coefficients, curves.

Every framework module exposes the same four functions, all pure Python:
`lr_at(step, **params)`, `curve(steps, **params)`, `warmup_end(**params)` and `horizon(**params)`.
Parameter names are the framework's own command-line flags in snake_case (`--lr-warmup-iters`
-> `lr_warmup_iters`), so a config key or a flag maps onto them without a translation table.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping

from orchestrator.errors import UserError

LrFunction = Callable[..., float]


def flag(name: str) -> str:
    """The command-line spelling of a parameter, for error messages (`min_lr` -> `--min-lr`)."""
    return "--" + name.replace("_", "-")


def require(condition: bool, message: str) -> None:
    """Raise a UserError naming the offending flag when a framework would reject its input."""
    if not condition:
        raise UserError(message)


def require_style(framework: str, key: str, style: str, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    require(
        style in allowed,
        f"{framework}: {flag(key)} {style!r} is not supported; choose one of {', '.join(allowed)}",
    )


def check_length_mode(framework: str, train_iters: int | None, train_samples: int | None,
                      lr_decay_iters: int | None, lr_decay_samples: int | None, lr_warmup_iters: int,
                      lr_warmup_samples: int, lr_warmup_fraction: float | None, global_batch_size: int) -> None:
    """`validate_args`: a run counts in iterations or in samples, and its LR flags must match."""
    require(global_batch_size >= 1, f"{framework}: --global-batch-size must be >= 1 (got {global_batch_size})")
    if train_iters:
        require(train_samples is None, f"{framework}: --train-iters and --train-samples exclude each other")
        require(lr_decay_samples is None, f"{framework}: --lr-decay-samples needs --train-samples, not --train-iters")
        require(lr_warmup_samples == 0, f"{framework}: --lr-warmup-samples needs --train-samples, not --train-iters")
        require(lr_warmup_fraction is None or lr_warmup_iters == 0,
                f"{framework}: can only specify one of --lr-warmup-fraction and --lr-warmup-iters")
    elif train_samples:
        require(lr_decay_iters is None, f"{framework}: --lr-decay-iters needs --train-iters, not --train-samples")
        require(lr_warmup_iters == 0, f"{framework}: --lr-warmup-iters needs --train-iters, not --train-samples")
        require(lr_warmup_fraction is None or lr_warmup_samples == 0,
                f"{framework}: can only specify one of --lr-warmup-fraction and --lr-warmup-samples")
    else:
        raise UserError(f"{framework}: either --train-iters or --train-samples should be provided")


def check_lr_range(framework: str, lr: float, min_lr: float) -> None:
    require(min_lr >= 0.0, f"{framework}: --min-lr must be >= 0 (got {min_lr})")
    require(lr >= min_lr, f"{framework}: --lr ({lr}) must be >= --min-lr ({min_lr})")


def check_warmup_and_decay(framework: str, warmup_samples: float, decay_samples: int) -> None:
    require(decay_samples > 0,
            f"{framework}: --lr-decay-iters / --train-iters (or their -samples twins) must be > 0 (got {decay_samples})")
    require(warmup_samples < decay_samples,
            f"{framework}: the warmup (--lr-warmup-iters/-samples/-fraction: {warmup_samples:g} samples) must be"
            f" shorter than the decay (--lr-decay-iters or --train-iters, or their -samples twins: {decay_samples} samples)")


def horizon_iterations(params: Mapping[str, object], decay_samples: float, samples_per_iteration: int) -> int:
    """The last iteration the run trains (`--train-iters`, or `--train-samples` in whole batches), or the
    iteration the decay ends if that is later."""
    train_iters = params.get("train_iters")
    if train_iters:
        trained = int(train_iters)  # type: ignore[call-overload]
    else:
        trained = math.ceil(int(params["train_samples"]) / samples_per_iteration)  # type: ignore[call-overload]
    return max(trained, math.ceil(decay_samples / samples_per_iteration))


def keyword_signature(function: Callable[..., object]) -> inspect.Signature:
    """`lr_at(step, **flags)`'s signature: `step`, then `function`'s keyword-only flags."""
    step = inspect.Parameter("step", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation="float")
    return inspect.Signature([step, *inspect.signature(function).parameters.values()])


def cosine_coefficient(ratio: float) -> float:
    """1 at ratio 0, 0 at ratio 1, half a cosine period in between."""
    return 0.5 * (math.cos(math.pi * ratio) + 1.0)


def curve(lr_at: LrFunction, steps: Iterable[int], params: dict[str, object]) -> list[tuple[int, float]]:
    """(step, lr) for every step, computed by `lr_at` with the same parameters."""
    return [(step, lr_at(step, **params)) for step in steps]


def sample_steps(last_step: int, max_points: int = 2000) -> list[int]:
    """Steps 0..last_step, thinned to about `max_points`, always keeping the last one."""
    every = max(1, math.ceil((last_step + 1) / max_points))
    steps = list(range(0, last_step + 1, every))
    if steps[-1] != last_step:
        steps.append(last_step)
    return steps
