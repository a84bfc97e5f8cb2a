"""The `--lr_constant_plus_cooldown_frac` that makes Megatron-DeepSpeed cool down over exactly R of T steps."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction

MAX_FRAC_DIGITS = 17  # a double has at most 17 significant decimal digits
FRAC_STEP_TOLERANCE = 1e-6  # steps: how far frac x TRAIN_ITERS may exceed the intended step count


def format_frac(numerator: int, total: int) -> str:
    """The shortest decimal f from which Megatron-DeepSpeed gets exactly `numerator` x B samples back.

    The trainer cools down over int(f x T x B) samples (B the global batch size: `training.py`, then
    `optimizer_param_scheduler.py`, whose int() truncates). Too few digits shift the cooldown's start by a
    fraction of a step or more (0.091 x 1100 is 100.1, not 100), and a double too far below R/T truncates
    to one sample short (0.57 is stored as 0.56999999999999995: int(0.57 x 100) = 56). So f is the decimal
    with the fewest significant digits whose double is
    - at most a relative 2**-54 below R/T: f x T x B then rounds back up to R x B for every B (the
      product's error is below half the spacing of doubles around R x B), and
    - at most FRAC_STEP_TOLERANCE steps over T above it: no extra sample for B below a million.
    Among candidates of the same length, one whose product with T is exactly `numerator` wins.
    """
    if not 0 < numerator <= total:
        raise ValueError(f"need 0 < numerator <= total, got {numerator}/{total}")
    exact = Fraction(numerator, total)
    lowest = exact * (1 - Fraction(1, 2**54))
    for digits in range(1, MAX_FRAC_DIGITS + 1):
        nearest, up = (_decimal_quotient(numerator, total, digits, rounding) for rounding in (ROUND_HALF_EVEN, ROUND_CEILING))
        with localcontext() as context:
            context.prec = digits
            candidates = [nearest, up, up.next_plus()]
        fitting = [c for c in candidates if lowest <= Fraction(float(c)) and (Fraction(float(c)) - exact) * total <= FRAC_STEP_TOLERANCE]
        for candidate in fitting:
            if float(candidate) * total == numerator:
                return format(candidate, "f")
        if fitting:
            return format(fitting[0], "f")
    raise AssertionError(f"no {MAX_FRAC_DIGITS}-digit fraction for {numerator}/{total}")  # 17 digits always fit


def _decimal_quotient(numerator: int, total: int, digits: int, rounding: str) -> Decimal:
    with localcontext() as context:
        context.prec = digits
        context.rounding = rounding
        return Decimal(numerator) / Decimal(total)


def cooldown_frac(cooldown_steps: int, total_iters: int) -> str:
    """`expr(cooldown_frac(R, T))`: the `--lr_constant_plus_cooldown_frac` a config needs for a cooldown of R
    steps ending at T, as text with the digits `format_frac` chose (a plain R / T can truncate a sample short)."""
    return format_frac(int(cooldown_steps), int(total_iters))
