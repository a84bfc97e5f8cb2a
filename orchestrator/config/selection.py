"""AutoExperiment's job selection on the command line: `-f KEY=VALUE` fixes, `KEY=V1,V2` filters."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.config.yaml_loader import parse_typed_scalar
from orchestrator.errors import UserError
from orchestrator.jobs import Job


def _split_assignment(text: str, what: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"{what} {text!r} must look like KEY=VALUE")
    return key.strip(), value


def _replace_everywhere(node: Any, key: str, value: Any) -> bool:
    """Set `key` to `value` in every mapping of the tree that has it; True if any had it."""
    found = False
    if isinstance(node, dict):
        for existing in list(node):
            if str(existing) == key:
                node[existing] = value
                found = True
            else:
                found = _replace_everywhere(node[existing], key, value) or found
    elif isinstance(node, list):
        for item in node:
            found = _replace_everywhere(item, key, value) or found
    return found


def apply_fixes(config: Mapping[str, Any], fixes: Sequence[str], typed_fixes: Sequence[str] = ()) -> dict[str, Any]:
    """Fix values before expansion (a swept key becomes a single value); an unknown key is added.

    A `-f` value is kept as the text typed (`-f lr=1e-3` writes `1e-3`, `seed=010` stays `010`), as
    AutoExperiment stores it (`cfg[key] = value`, a string); a `-F` value is typed as YAML would type it.
    """
    assignments = [(text, "-f", False) for text in fixes] + [(text, "-F", True) for text in typed_fixes]
    fixed = copy.deepcopy(dict(config)) if assignments else dict(config)
    for text, flag, typed in assignments:
        key, raw = _split_assignment(text, flag)
        value = parse_typed_scalar(raw) if typed else raw
        if not _replace_everywhere(fixed, key, value):
            fixed[key] = value
    return fixed


def parse_filters(filters: Sequence[str]) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for text in filters:
        key, values = _split_assignment(text, "filter")
        parsed.setdefault(key, []).extend(v.strip() for v in values.split(","))
    return parsed


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value) if isinstance(value, str) and value.strip() else None
    except ValueError:
        return None


def value_matches(value: Any, wanted: Sequence[str]) -> bool:
    """AutoExperiment's rule (the value's text is one of the wanted texts), and numbers by value: `LR=1e-3`
    matches 0.001 (the config's spelling), which prints as 0.001 and would otherwise match nothing."""
    if str(value) in wanted:
        return True
    number = _number(value) if isinstance(value, (int, float)) else None
    return number is not None and any(_number(text) == number for text in wanted)


def select_jobs(jobs: Sequence[Job], filters: Mapping[str, Sequence[str]]) -> list[Job]:
    """Keep jobs whose value is one of the listed values for every filter key; filters that keep no job are an
    error naming each key that matches nothing and the values it has."""
    for key in filters:
        if not any(key in job.params for job in jobs):
            raise UserError(f"filter key {key!r} is not a variable of any job")
    kept = [job for job in jobs if all(value_matches(job.params.get(key), values) for key, values in filters.items())]
    if jobs and filters and not kept:
        raise UserError(_no_match_message(jobs, filters))
    return kept


def _no_match_message(jobs: Sequence[Job], filters: Mapping[str, Sequence[str]]) -> str:
    misses = []
    for key, values in filters.items():
        if not any(value_matches(job.params.get(key), values) for job in jobs):
            present = list(dict.fromkeys(str(job.params.get(key)) for job in jobs if key in job.params))
            shown = ", ".join(present[:8]) + (f", ... ({len(present)} values)" if len(present) > 8 else "")
            misses.append(f"{key}={','.join(values)} matches no job ({key} is {shown})")
    return "; ".join(misses) if misses else \
        f"the filters {' '.join(f'{k}={v}' for k, v in ((k, ','.join(v)) for k, v in filters.items()))} " \
        "match jobs one by one but no job all together"
