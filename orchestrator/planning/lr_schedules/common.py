"""What the per-framework LR schedules share: input checks, decay coefficients, curves.

Every framework module exposes the same four functions, all pure Python:
`lr_at(step, **params)`, `curve(steps, **params)`, `warmup_end(**params)` and `horizon(**params)`.
Parameter names are the framework's own command-line flags in snake_case (`--lr-warmup-iters`
-> `lr_warmup_iters`), so a config key or a flag maps onto them without a translation table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

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
