"""epfml/schedules-and-scaling's WSD schedule (`src/optim/utils.py: wsd_schedule`, `--scheduler wsd`).

The trainer wraps a multiplier in torch's LambdaLR, so after `step` completed iterations the LR is
`--lr` * factor(step), with (n = `--iterations`, D = int(`--wsd-fract-decay` * n), H = n - D,
s = `--wsd-final-lr-scale`, r = (step - H) / D):
- step < `--warmup-steps` W: linear from lr/100 at step 0 towards lr (step = W is already the plateau);
- W <= step < H: lr;
- H <= step < n: `--decay-type` linear s + (1-s)(1-r), cosine s + (1-s)(1+cos(pi r))/2, exp s**r,
  miror_cosine 2*linear - cosine, square s + (1-s)(1-r**2), sqrt s + (1-s)(1-sqrt(r));
- step >= n: lr * s.
Note `exp` with s = 0 is lr at r = 0 and 0 right after (0**r), as in the source.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from orchestrator.planning.lr_schedules import common

FRAMEWORK = "schedules-and-scaling"
DECAY_TYPES: tuple[str, ...] = ("linear", "cosine", "exp", "miror_cosine", "square", "sqrt")
SCHEDULERS: tuple[str, ...] = ("wsd",)
WARMUP_INIT_DIV_FACTOR = 100.0  # main.py passes init_div_factor=1e2


def decay_factor(decay_type: str, ratio: float, final_scale: float) -> float:
    """The multiplier after a fraction `ratio` of the decay phase."""
    linear = final_scale + (1.0 - final_scale) * (1.0 - ratio)
    cosine = final_scale + (1.0 - final_scale) * (1.0 + math.cos(math.pi * ratio)) * 0.5
    if decay_type == "linear":
        return linear
    if decay_type == "exp":
        return final_scale**ratio
    if decay_type == "cosine":
        return cosine
    if decay_type == "miror_cosine":
        return linear * 2.0 - cosine
    if decay_type == "square":
        return final_scale + (1.0 - final_scale) * (1.0 - ratio**2)
    if decay_type == "sqrt":
        return final_scale + (1.0 - final_scale) * (1.0 - math.sqrt(ratio))
    common.require_style(FRAMEWORK, "decay_type", decay_type, DECAY_TYPES)
    raise AssertionError("unreachable")


def decay_start(iterations: int, wsd_fract_decay: float = 0.1) -> int:
    """H: the first step of the decay phase (its LR is still the full `--lr`)."""
    return iterations - int(wsd_fract_decay * iterations)


def lr_at(
    step: float,
    *,
    lr: float,
    iterations: int,
    warmup_steps: int = 300,
    wsd_fract_decay: float = 0.1,
    wsd_final_lr_scale: float = 0.0,
    decay_type: str = "linear",
    scheduler: str = "wsd",
) -> float:
    """The LR schedules-and-scaling uses after `step` completed iterations."""
    common.require_style(FRAMEWORK, "scheduler", scheduler, SCHEDULERS)
    common.require_style(FRAMEWORK, "decay_type", decay_type, DECAY_TYPES)
    common.require(iterations > 0, f"{FRAMEWORK}: --iterations must be > 0 (got {iterations})")
    common.require(
        warmup_steps < iterations,
        f"{FRAMEWORK}: --warmup-steps ({warmup_steps}) must be < --iterations ({iterations})",
    )
    common.require(
        0.0 <= wsd_fract_decay <= 1.0, f"{FRAMEWORK}: --wsd-fract-decay must be in [0, 1] (got {wsd_fract_decay})"
    )
    decay_steps = int(wsd_fract_decay * iterations)
    hold_end = iterations - decay_steps
    if step < warmup_steps:
        factor = step / warmup_steps + (1.0 - step / warmup_steps) / WARMUP_INIT_DIV_FACTOR
    elif step < hold_end:
        factor = 1.0
    elif step < iterations:
        factor = decay_factor(decay_type, (step - hold_end) / decay_steps, wsd_final_lr_scale)
    else:
        factor = wsd_final_lr_scale
    return lr * factor


def curve(steps: Iterable[int], **params: object) -> list[tuple[int, float]]:
    return common.curve(lr_at, steps, dict(params))


def warmup_end(**params: object) -> float:
    return float(params.get("warmup_steps", 300) or 0)  # type: ignore[arg-type]


def horizon(**params: object) -> int:
    return int(params["iterations"])  # type: ignore[arg-type]
