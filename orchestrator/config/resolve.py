"""Resolve `{VAR}` references and `expr(...)` values of one job to their fixed point.

AutoExperiment formats every string value with `str.format` over the other values, evaluates values
of the form `expr(...)`, and repeats until nothing changes. We reach the same fixed point by resolving
each value after the values it references (depth first), which is faster and lets us name an
undefined variable or a reference cycle instead of silently leaving `{VAR}` in a script.

Kept verbatim, as AutoExperiment keeps them: values whose braces are not references (`{0000..0139}`
brace ranges, `{a,b}`, regex counts like `\\d{3}`, unbalanced braces) and `${VAR}` shell variables
when `VAR` is not a parameter.
"""

from __future__ import annotations

import operator
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.config.expressions import EXPR_PREFIX, ExpressionError, evaluate_expression

_VARIABLE_NAME = re.compile(r"[A-Za-z_][\w\-]*(?:\.[A-Za-z_][\w\-]*)*\Z")
_FIELD_ROOT = re.compile(r"[^.\[]*")
_MAX_REFORMATS = 50  # AutoExperiment re-formats text produced by `{{...}}` escapes; bound that loop


def _needs_work(text: str) -> bool:
    return "{" in text or "}" in text or (text.startswith(EXPR_PREFIX) and text.endswith(")"))


class ResolutionError(ValueError):
    """A value cannot be resolved: `key` is the parameter, the message says why."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass
class _Pattern:
    """A parsed string value: its literal text and the fields it references."""

    raw: str
    verbatim: bool  # unparsable braces: keep the text as is
    fields: tuple[tuple[str, int], ...] = ()  # (field name, offset of its '{' in raw)
    formats: dict[tuple[tuple[str, str], ...], str] = field(default_factory=dict)  # per reference shape


def _parse_fields(raw: str) -> list[str]:
    names: list[str] = []
    for _literal, field_name, spec, _conversion in string.Formatter().parse(raw):
        if field_name is not None:
            names.append(field_name)
            if spec and "{" in spec:
                names.extend(_parse_fields(spec))
    return names


def _compile(raw: str) -> _Pattern:
    try:
        names = _parse_fields(raw)
    except ValueError:
        return _Pattern(raw, verbatim=True)
    offsets = []
    search_from = 0
    for name in names:
        offset = raw.find("{" + name, search_from)
        offsets.append((name, offset))
        if offset >= 0:
            search_from = offset + 1
    return _Pattern(raw, verbatim=False, fields=tuple(offsets))


def _rewrite_positional(raw: str, shape: tuple[tuple[str, str], ...]) -> str:
    """`raw` with every field replaced by a positional one (`{args.lr:.0e}` -> `{0:.0e}`).

    Positional fields let dotted names like `args.lr` be whole parameter names, as AutoExperiment's
    sectioned configs use them, and make formatting one C call with no dict to build.
    """
    position = iter(range(len(shape)))
    shape_iter = iter(shape)

    def rebuild(text: str) -> str:
        pieces: list[str] = []
        for literal, field_name, spec, conversion in string.Formatter().parse(text):
            pieces.append(literal.replace("{", "{{").replace("}", "}}"))
            if field_name is None:
                continue
            _key, rest = next(shape_iter)
            pieces.append("{" + str(next(position)) + rest)
            if conversion:
                pieces.append("!" + conversion)
            if spec:
                pieces.append(":" + (rebuild(spec) if "{" in spec else spec))
            pieces.append("}")
        return "".join(pieces)

    return rebuild(raw)


@dataclass(frozen=True)
class _Step:
    """Resolve `key` of a planned job: format `positional` with `deps`' values (None: keep raw)."""

    key: str
    raw: str
    positional: str | None
    deps: tuple[str, ...]

    @property
    def compiled(self) -> tuple[str, str, Callable[..., str] | None, Callable[[dict[str, Any]], Any], bool]:
        """(key, raw, bound format, getter of the dependency values as a tuple, may be an expr)."""
        getter = operator.itemgetter(*self.deps) if self.deps else (lambda _params: ())
        if len(self.deps) == 1:
            single = operator.itemgetter(self.deps[0])
            getter = lambda params: (single(params),)  # noqa: E731 - itemgetter of one key returns no tuple
        bound = self.positional.format if self.positional is not None else None
        return self.key, self.raw, bound, getter, self.raw.startswith(EXPR_PREFIX)


class _Fallback(Exception):
    """A planned job needs the general resolver (its data made the plan inapplicable)."""


class Resolver:
    """Resolves jobs of one grid.

    The first job of each grid signature (see `expand_grid`) is resolved in general, depth first,
    and the steps it took become that signature's plan: later jobs with the same keys and the same
    text only re-run the recorded `str.format` calls. Anything unusual falls back to the general path.
    """

    def __init__(self) -> None:
        self._patterns: dict[str, _Pattern] = {}
        self._plans: dict[tuple[int, ...], list[_Step] | None] = {}
        self._compiled: dict[tuple[int, ...], list[Any]] = {}
        self._recording: list[_Step] | None = None
        self._plannable = True

    def resolve(self, params: dict[str, Any], signature: tuple[int, ...] | None = None) -> dict[str, Any]:
        """Resolve every string value of `params` in place and return it."""
        if signature is None:
            return self._resolve_all(params)
        plan = self._plans.get(signature, False)
        if plan is False:
            self._recording, self._plannable = [], True
            try:
                self._resolve_all(params)
                self._plans[signature] = self._recording if self._plannable else None
            finally:
                self._recording = None
            return params
        if plan is None:
            return self._resolve_all(params)
        compiled = self._compiled.get(signature)
        if compiled is None:
            compiled = self._compiled[signature] = [step.compiled for step in plan]
        try:
            return self._run_plan(compiled, params)
        except _Fallback:
            for step in plan:
                params[step.key] = step.raw
            return self._resolve_all(params)

    def resolve_nested(self, params: dict[str, Any], key: str) -> None:
        """Resolve the strings inside a value kept whole (a mapping or list of `ATOMIC_KEYS`), keys included,
        against the job's already resolved parameters; `expr()` works there too."""

        scratch, done = dict(params), set(params)  # one copy per value, not per string in it

        def resolve(where: str, value: Any) -> Any:
            if type(value) is str:
                scratch[where] = value
                try:
                    return self._resolve_key(where, scratch, done, [])
                finally:  # no string of the value can see another one's text
                    del scratch[where]
                    done.discard(where)
            if isinstance(value, dict):
                return {resolve(f"{where}.{k}", k) if type(k) is str else k: resolve(f"{where}.{k}", v)
                        for k, v in value.items()}
            if isinstance(value, list):
                return [resolve(f"{where}[{index}]", item) for index, item in enumerate(value)]
            return value

        params[key] = resolve(key, params[key])

    @staticmethod
    def _run_plan(plan: list[Any], params: dict[str, Any]) -> dict[str, Any]:
        for key, raw, bound_format, dependency_values, may_be_expr in plan:
            if bound_format is None:
                value: Any = raw
            else:
                try:
                    value = bound_format(*dependency_values(params))
                except (ValueError, TypeError, AttributeError, IndexError, KeyError):
                    raise _Fallback from None
                if "{" in value or "}" in value:
                    raise _Fallback
            if may_be_expr and value.startswith(EXPR_PREFIX) and value.endswith(")"):
                try:
                    value = evaluate_expression(value)
                except ExpressionError as error:
                    raise ResolutionError(key, f"expr() failed: {error}") from None
            params[key] = value
        return params

    def _resolve_all(self, params: dict[str, Any]) -> dict[str, Any]:
        done: set[str] = set()
        for key, value in params.items():
            if type(value) is str and key not in done:
                self._resolve_key(key, params, done, [])
        return params

    def _pattern(self, raw: str) -> _Pattern:
        pattern = self._patterns.get(raw)
        if pattern is None:
            pattern = self._patterns[raw] = _compile(raw)
        return pattern

    def _resolve_key(self, key: str, params: dict[str, Any], done: set[str], stack: list[str]) -> Any:
        value = params[key]
        if type(value) is not str or key in done:
            done.add(key)
            return value
        if key in stack:
            cycle = stack[stack.index(key) :] + [key]
            raise ResolutionError(stack[0], "reference cycle: " + " -> ".join(cycle))
        stack.append(key)
        try:
            value = self._resolve_text(key, value, params, lambda dep: self._resolve_key(dep, params, done, stack))
        finally:
            stack.pop()
        params[key] = value
        done.add(key)
        return value

    def _resolve_text(self, key: str, raw: str, params: dict[str, Any], resolve_dep: Callable[[str], Any]) -> Any:
        value: Any = raw
        step = _Step(key, raw, None, ())
        for passes in range(_MAX_REFORMATS):
            if "{" not in value and "}" not in value:
                break
            if passes == 0:
                formatted, positional, deps = self._format_once(key, value, params, resolve_dep)
            else:
                # Text produced by `{{...}}` escapes (or by a referenced value) is formatted again, as
                # AutoExperiment's fixed-point loop does; where that fails (`{asctime}`), it keeps the text.
                self._plannable = False
                try:
                    formatted, positional, deps = self._format_once(key, value, params, resolve_dep)
                except ResolutionError:
                    break
            if formatted == value:
                break
            if passes == 0:
                step = _Step(key, raw, positional, deps)
            value = formatted
        if self._recording is not None and (step.positional is not None or _needs_work(raw)):
            # Plain text is data that differs between jobs of a plan; only templates are steps.
            self._recording.append(step)
        if type(value) is str and value.startswith(EXPR_PREFIX) and value.endswith(")"):
            try:
                return evaluate_expression(value)
            except ExpressionError as error:
                raise ResolutionError(key, f"expr() failed: {error}") from None
        return value

    def _format_once(
        self, key: str, text: str, params: dict[str, Any], resolve_dep: Callable[[str], Any]
    ) -> tuple[str, str | None, tuple[str, ...]]:
        """Format `text` once: (result, positional format used, dependency keys)."""
        pattern = self._pattern(text)
        if pattern.verbatim:
            return text, None, ()
        shape: list[tuple[str, str]] = []
        for name, offset in pattern.fields:
            if name in params:
                shape.append((name, ""))
                continue
            root = _FIELD_ROOT.match(name).group()  # type: ignore[union-attr]
            if root and root in params:
                shape.append((root, name[len(root) :]))
                continue
            if _VARIABLE_NAME.match(name) and not (offset > 0 and text[offset - 1] == "$"):
                raise ResolutionError(key, f"undefined variable {{{name}}} in {text!r}")
            return text, None, ()  # not a reference (e.g. `{0000..0139}`, `${HOME}`): AutoExperiment keeps the text
        shape_key = tuple(shape)
        positional = pattern.formats.get(shape_key)
        if positional is None:
            positional = pattern.formats[shape_key] = _rewrite_positional(text, shape_key)
        deps = tuple(dep for dep, _rest in shape)
        values = [resolve_dep(dep) for dep in deps]
        try:
            return positional.format(*values), positional, deps
        except (ValueError, TypeError, AttributeError, IndexError, KeyError) as error:
            # AutoExperiment leaves such values alone; a format spec that does not fit the value
            # (`{lr:.0e}` on a string) is a real mistake worth stopping for.
            raise ResolutionError(key, f"cannot format {text!r}: {error}") from None


def autoexperiment_fixed_point(params: dict[str, Any]) -> dict[str, Any]:
    """AutoExperiment's own resolution loop, step for step (template.py's `generate_job_defs`).

    Every pass formats each string value with the previous pass's values (expressions still
    unevaluated left out), evaluates the `expr(...)` values, and keeps a value whose formatting or
    evaluation fails; passes repeat until nothing changes. `Resolver` reaches the same values
    depth first, except where `{{...}}` escapes produce new braces: there the order of passes
    decides what is formatted again, so jobs with escapes are resolved this way (after `Resolver`
    has checked them). `expr()` runs in simpleeval here too, never `eval`.
    """
    params = dict(params)
    for _ in range(_MAX_REFORMATS):
        previous = dict(params)
        available = {key: value for key, value in previous.items() if not _is_expression_text(value)}
        for key, old in previous.items():
            if type(old) is not str:
                continue
            try:
                params[key] = old.format(**available)
            except Exception:  # noqa: BLE001 - AutoExperiment keeps the value whatever went wrong
                pass
            value = params[key]
            if _is_expression_text(value):
                try:
                    params[key] = evaluate_expression(value)
                except ExpressionError:
                    pass
        if previous == params:
            break
    return params


def _is_expression_text(value: Any) -> bool:
    return type(value) is str and value.startswith(EXPR_PREFIX) and value.endswith(")")
