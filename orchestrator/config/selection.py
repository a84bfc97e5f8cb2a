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


def select_jobs(jobs: Sequence[Job], filters: Mapping[str, Sequence[str]]) -> list[Job]:
    """Keep jobs whose `str(value)` is one of the listed values for every filter key (AutoExperiment)."""
    for key in filters:
        if not any(key in job.params for job in jobs):
            raise UserError(f"filter key {key!r} is not a variable of any job")
    return [job for job in jobs if all(str(job.params.get(key)) in values for key, values in filters.items())]
