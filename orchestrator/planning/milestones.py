"""Token milestones -> checkpoint steps.

Milestone i (i = 1 .. N-1) is i trillion tokens. Its exact step `steps_mod` is i * 10**12 /
tokens_per_step rounded to the nearest multiple of `round_to`; its rollback step `steps_rollback`
is steps_mod - cooldown_percent * final_steps (final_steps = steps_mod of the last milestone),
rounded the same way: resuming there and cooling down for cooldown_percent of the whole run ends
the cooldown near the milestone.

Rounding is exact (Fractions) and ties go UP (towards +infinity): 125 -> 150 with round_to=50.
Python's round() would give 100 (banker's rounding), which no one expects from a step table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import floor

from orchestrator.errors import UserError
from orchestrator.planning import write_atomically

TOKENS_PER_TRILLION = 10**12
DEFAULT_TTOKENS = 8
DEFAULT_TOKENS_PER_STEP = 8192 * 6144
DEFAULT_COOLDOWN_PERCENT = "0.05"
DEFAULT_ROUND = 50
TSV_HEADER = ("id", "steps_mod", "steps_rollback")

_PRODUCT = re.compile(r"^\s*\d+(\s*\*\s*\d+)*\s*$")


@dataclass(frozen=True)
class Milestone:
    id: int
    steps_mod: int
    steps_rollback: int
    """May be zero or negative when the cooldown is longer than the run up to this milestone."""


def round_half_up(value: Fraction | int, multiple: int) -> int:
    """`value` rounded to the nearest multiple of `multiple`, ties towards +infinity."""
    if multiple <= 0:
        raise ValueError(f"multiple must be positive, got {multiple}")
    return floor(Fraction(value) / multiple + Fraction(1, 2)) * multiple


def parse_tokens_per_step(text: str | int) -> int:
    """An integer, or a product of integers as users write it (`8192*6144`)."""
    if isinstance(text, int):
        value = text
    elif _PRODUCT.match(text):
        value = 1
        for factor in text.split("*"):
            value *= int(factor)
    else:
        raise UserError(f"--tokens-per-step: {text!r} is not an integer or a product like 8192*6144")
    if value <= 0:
        raise UserError(f"--tokens-per-step: must be positive, got {value}")
    return value


def parse_fraction(text: str | float | Fraction, what: str) -> Fraction:
    """An exact fraction from decimal text (0.05 is 1/20, not the double nearest it)."""
    try:
        return Fraction(str(text).strip())
    except (ValueError, ZeroDivisionError):
        raise UserError(f"{what}: {text!r} is not a number") from None


def build_milestones(
    ttokens: int = DEFAULT_TTOKENS,
    tokens_per_step: int = DEFAULT_TOKENS_PER_STEP,
    cooldown_percent: str | float | Fraction = DEFAULT_COOLDOWN_PERCENT,
    round_to: int = DEFAULT_ROUND,
) -> list[Milestone]:
    """The milestone table for milestones 0 .. ttokens-1 trillion tokens (rows for 1 .. ttokens-1)."""
    if ttokens < 2:
        raise UserError(f"--ttokens: need at least 2 (rows for milestones 1..N-1 trillion tokens), got {ttokens}")
    if tokens_per_step <= 0:
        raise UserError(f"--tokens-per-step: must be positive, got {tokens_per_step}")
    if round_to <= 0:
        raise UserError(f"--round: must be a positive integer, got {round_to}")
    percent = parse_fraction(cooldown_percent, "--cooldown-percent")
    if not 0 <= percent < 1:
        raise UserError(f"--cooldown-percent: must be in [0, 1) (a fraction of the run, 0.05 = 5%), got {cooldown_percent}")

    exact_steps = [
        round_half_up(Fraction(i * TOKENS_PER_TRILLION, tokens_per_step), round_to) for i in range(1, ttokens)
    ]
    if exact_steps[0] <= 0:
        raise UserError(
            f"--tokens-per-step {tokens_per_step} is so large that 1T tokens round to step 0 with --round {round_to}"
        )
    cooldown = percent * exact_steps[-1]
    return [
        Milestone(id=i, steps_mod=steps, steps_rollback=round_half_up(steps - cooldown, round_to))
        for i, steps in enumerate(exact_steps, start=1)
    ]


def format_table(milestones: Sequence[Milestone]) -> str:
    """Tab-separated, header `id steps_mod steps_rollback`, one line per milestone."""
    rows = [TSV_HEADER] + [(str(m.id), str(m.steps_mod), str(m.steps_rollback)) for m in milestones]
    return "".join("\t".join(row) + "\n" for row in rows)


def write_table(path: str, milestones: Sequence[Milestone]) -> None:
    write_atomically(path, format_table(milestones))

