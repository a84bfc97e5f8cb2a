"""Turn resolved parameter dicts into `Job`s: special keys, mandatory keys, unique names."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from orchestrator.errors import UserError
from orchestrator.jobs import (DEFAULT_CHECK_INTERVAL_SECS, DEFAULT_MAX_FAILURES, DEFAULT_NODE_FAULT_REGEX,
                              DEFAULT_PROBE_TIMEOUT_SECS, JOB_ARRAY_AUTO_MIN_TASKS, PREQUEUE_AUTO, PREQUEUE_MODES, PREQUEUE_OFF, Job)

MANDATORY_KEYS: tuple[str, ...] = ("name", "template", "output_file", "cmd", "sbatch_script")


def _text(value: Any) -> str:
    return value if type(value) is str else ("" if value is None else str(value))


def _seconds(value: Any, key: str, default: float | None, job_name: str) -> float | None:
    if value is None or value == "":
        return default
    if type(value) is int or type(value) is float:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UserError(f"job {job_name}: key {key!r} must be a number of seconds, got {value!r}") from None


def _regex(value: Any, key: str, job_name: str) -> str:
    text = _text(value)
    if text:
        try:
            re.compile(text.encode())
        except re.error as error:
            raise UserError(f"job {job_name}: key {key!r} is not a valid regular expression ({error}): {text!r}") from None
    return text


def _prequeue(value: Any, job_name: str) -> str:
    if value is None or value is False or value == "":
        return PREQUEUE_OFF
    if value is True:
        return PREQUEUE_AUTO
    if type(value) is str and value.lower() in PREQUEUE_MODES:
        return value.lower()
    raise UserError(f"job {job_name}: key 'prequeue' must be one of {', '.join(PREQUEUE_MODES)} (or true/false), "
                    f"got {value!r}")


def _array_min_tasks(value: Any, job_name: str) -> int:
    """`job_array`: off (default) | auto | always | a number of ready jobs (at least 2) that makes an array."""
    if value is None or value is False or value == "" or (type(value) is str and value.lower() == "off"):
        return 0
    if value is True or (type(value) is str and value.lower() == "auto"):
        return JOB_ARRAY_AUTO_MIN_TASKS
    if type(value) is str and value.lower() == "always":
        return 2
    if type(value) is int and value >= 2:
        return value
    raise UserError(f"job {job_name}: key 'job_array' must be off, auto (or true), always, or a number of jobs of at "
                    f"least 2, got {value!r}")


def job_from_params(params: dict[str, Any], index: int) -> Job:
    get = params.get
    name = get("name")
    template = get("template")
    output_file = get("output_file")
    cmd = get("cmd")
    sbatch_script = get("sbatch_script")
    if name is None or template is None or output_file is None or cmd is None or sbatch_script is None:
        missing = next(key for key in MANDATORY_KEYS if get(key) is None)
        raise UserError(f"job #{index + 1}: mandatory key {missing!r} is missing (or null) in the config")
    if type(name) is not str:
        name = str(name)
    max_failures = get("max_failures", DEFAULT_MAX_FAILURES)
    if type(max_failures) is not int:
        try:
            max_failures = int(max_failures)
        except (TypeError, ValueError):
            raise UserError(f"job {name}: key 'max_failures' must be an integer, got {max_failures!r}") from None
    check_interval = get("check_interval_secs")
    return Job(
        name,
        template if type(template) is str else str(template),
        sbatch_script if type(sbatch_script) is str else str(sbatch_script),
        output_file if type(output_file) is str else str(output_file),
        cmd if type(cmd) is str else str(cmd),
        params,
        check_interval
        if type(check_interval) is int or type(check_interval) is float
        else _seconds(check_interval, "check_interval_secs", DEFAULT_CHECK_INTERVAL_SECS, name),
        _text(get("start_condition_cmd")),
        _text(get("termination_str")),
        _text(get("termination_cmd")),
        _seconds(get("freeze_secs"), "freeze_secs", None, name),
        max_failures,
        _seconds(get("probe_timeout_secs"), "probe_timeout_secs", DEFAULT_PROBE_TIMEOUT_SECS, name),
        _regex(get("progress_regex"), "progress_regex", name),
        _regex(get("fail_regex"), "fail_regex", name),
        _regex(get("node_fault_regex", DEFAULT_NODE_FAULT_REGEX), "node_fault_regex", name),
        _prequeue(get("prequeue"), name),
        _array_min_tasks(get("job_array"), name),
    )


def check_unique_names(jobs: Sequence[Job], varying_keys: Iterable[str]) -> None:
    counts = Counter(job.name for job in jobs)
    duplicates = [name for name, count in counts.items() if count > 1]
    if not duplicates:
        return
    first = duplicates[0]
    clashing = [job.params for job in jobs if job.name == first]
    hint_keys = [key for key in varying_keys if len({repr(p.get(key)) for p in clashing}) > 1][:3]
    shown = ", ".join(duplicates[:5]) + (f" (and {len(duplicates) - 5} more)" if len(duplicates) > 5 else "")
    if hint_keys:
        advice = "add " + ", ".join("{" + key + "}" for key in hint_keys) + " to `name` to tell them apart"
    else:
        advice = "their parameters are identical: a nested key probably overrides a sweep of the same name"
    raise UserError(f"job names must be unique; duplicated: {shown}\n  {advice}")
