"""Safe evaluation of `expr(...)` values with simpleeval (never Python's `eval`).

Allowed: arithmetic, comparisons, boolean logic, conditional expressions, list/tuple/dict/set
literals with indexing, and the functions in `EXPR_FUNCTIONS`. Not allowed: attribute access,
imports, comprehensions, lambdas, file access; powers, strings and lists are bounded (simpleeval's
safe `*` and `+`) so a typo cannot hang or exhaust the login node.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

import simpleeval

from orchestrator.formulas.flops import FLOPS_EXPR_FUNCTIONS

EXPR_PREFIX = "expr("
MAX_RESULT_DIGITS = 4300  # Python's own int->str limit; beyond it a value is useless in a script.


def _bounded_power(base: Any, exponent: Any) -> Any:
    if isinstance(base, (int, float)) and isinstance(exponent, (int, float)) and abs(base) > 1 and exponent > 0:
        if exponent * math.log10(abs(base)) > MAX_RESULT_DIGITS:
            raise simpleeval.NumberTooHigh(f"{base}**{exponent} is too large (more than {MAX_RESULT_DIGITS} digits)")
    return operator.pow(base, exponent)


def _forbid_attributes(node: ast.Attribute) -> Any:
    raise simpleeval.FeatureNotAvailable(f"attribute access ('.{node.attr}') is not allowed in expr()")


# One table of the functions `expr()` may call. Other modules add theirs here (e.g. FLOPs helpers).
EXPR_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "len": len,
    "sum": sum,
    "sorted": sorted,
    "any": any,
    "all": all,
    "pow": _bounded_power,
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,
    "log2": math.log2,
    "log10": math.log10,
    "ceil": math.ceil,
    "floor": math.floor,
    "trunc": math.trunc,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "isclose": math.isclose,
}
EXPR_FUNCTIONS.update(FLOPS_EXPR_FUNCTIONS)  # model_params, flops_per_token, tokens_per_step, ...


def _cooldown_frac(cooldown_steps: int, total_iters: int) -> str:
    """`cooldown_frac(R, T)` (orchestrator.formulas.cooldown_frac), imported on first use: its decimal and
    fractions imports would otherwise slow every command that loads a config."""
    from orchestrator.formulas.cooldown_frac import cooldown_frac

    return cooldown_frac(cooldown_steps, total_iters)


EXPR_FUNCTIONS["cooldown_frac"] = _cooldown_frac

EXPR_NAMES: dict[str, Any] = {"pi": math.pi, "e": math.e, "inf": math.inf, "nan": math.nan}


class ExpressionError(ValueError):
    """An `expr()` that cannot be evaluated; the message says why."""


def is_expression(value: Any) -> bool:
    """AutoExperiment's rule: a string value of the form `expr(...)`."""
    return type(value) is str and value.startswith(EXPR_PREFIX) and value.endswith(")")


def _forbid_comprehensions(node: ast.AST) -> Any:
    raise simpleeval.FeatureNotAvailable("comprehensions are not allowed in expr(); write the list out")


def _make_evaluator() -> simpleeval.SimpleEval:
    operators = dict(simpleeval.DEFAULT_OPERATORS)
    operators[ast.Pow] = _bounded_power
    evaluator = simpleeval.EvalWithCompoundTypes(operators=operators, functions=EXPR_FUNCTIONS, names=EXPR_NAMES)
    evaluator.nodes[ast.Attribute] = _forbid_attributes
    for comprehension in (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp):
        evaluator.nodes[comprehension] = _forbid_comprehensions
    return evaluator


_EVALUATOR = _make_evaluator()
_RESULTS: dict[str, Any] = {}  # the same expression text gives the same value: evaluate it once


def evaluate_expression(value: str) -> Any:
    """Evaluate `expr(BODY)` and return its value; raise ExpressionError naming the problem."""
    try:
        return _RESULTS[value]
    except KeyError:
        pass
    body = value[len(EXPR_PREFIX) : -1]
    try:
        result = _EVALUATOR.eval(body)
    except SyntaxError as error:
        raise ExpressionError(f"syntax error in {value!r}: {error.msg}") from None
    except simpleeval.NameNotDefined as error:
        raise ExpressionError(f"unknown name {error.name!r} in {value!r} (variables are written {{NAME}})") from None
    except simpleeval.FunctionNotDefined as error:
        raise ExpressionError(f"function {error.func_name!r} is not allowed in {value!r}") from None
    except simpleeval.InvalidExpression as error:
        raise ExpressionError(f"{error} in {value!r}") from None
    except (ArithmeticError, LookupError, TypeError, ValueError) as error:
        raise ExpressionError(f"{type(error).__name__}: {error} in {value!r}") from None
    _RESULTS[value] = result
    return result
