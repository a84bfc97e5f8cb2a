"""Data the jobs name must exist before they queue: Megatron prefixes, data-file lists, checkpoints to convert.

- A Megatron data prefix (`--data-path`, `--train-data-path`, ... and the `DATA_PATH`-like job parameters)
  needs `PREFIX.bin` and `PREFIX.idx`; weights between prefixes (`0.5 a 0.5 b`) are skipped.
- A data-file list (`--data-file-list`, `DATA_FILE_LIST`; lines `weight prefix corpus`, as
  Megatron-DeepSpeed's `pretrain_gpt_alcf.py` reads them) must exist and every prefix it lists too,
  unless the campaign writes it (`data_mix`).
- A job that converts a run's checkpoints (its script claims them with `orch ckpt` or reads
  `RUN_DIR/checkpoints`) needs a job of the campaign training in that RUN_DIR, or the checkpoints there.
Paths holding `$` or `{` are only known when the job runs and are skipped. Relative paths are taken from
the directory `orch` runs in, where the jobs are submitted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from orchestrator.errors import UserError
from orchestrator.planning.data_mix import read_data_list

DEFAULT_PREFIX_KEYS: tuple[str, ...] = ("DATA_PATH", "TRAIN_DATA_PATH", "VALID_DATA_PATH", "TEST_DATA_PATH")
DEFAULT_LIST_KEYS: tuple[str, ...] = ("DATA_FILE_LIST",)
PREFIX_FLAGS: tuple[str, ...] = ("--data-path", "--train-data-path", "--valid-data-path", "--test-data-path")
LIST_FLAGS: tuple[str, ...] = ("--data-file-list",)


def _unknown_until_run(path: str) -> bool:
    return "$" in path or "{" in path


def _is_weight(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=4096)
def _missing_files(prefix: str) -> tuple[str, ...]:
    """The suffixes a data prefix lacks (a campaign's jobs mostly share their data: asked once per build)."""
    if Path(prefix).is_dir():
        return ()  # Megatron-DeepSpeed also reads every .bin of a folder
    return tuple(suffix for suffix in (".bin", ".idx") if not Path(prefix + suffix).is_file())


def clear_cache() -> None:
    _missing_files.cache_clear()


def prefix_problems(words: Iterable[str], what: str) -> list[str]:
    problems = []
    for word in words:
        if _is_weight(word) or _unknown_until_run(word):
            continue
        prefix = word.removesuffix(".bin").removesuffix(".idx")
        missing = _missing_files(prefix)
        if missing:
            problems.append(f"{what}: data prefix {prefix} has no {' / '.join(prefix + s for s in missing)}")
    return problems


def list_problems(path: str, what: str, generated: set[str], entries: bool = True) -> list[str]:
    """A data-file list that is missing or unreadable; with `entries`, also its Megatron prefixes without data."""
    if _unknown_until_run(path) or os.path.normpath(path) in generated:
        return []
    if not Path(path).is_file():
        return [f"{what}: data-file list {path} does not exist"]
    try:
        listed = read_data_list(path)
    except UserError as error:
        return [f"{what}: {error}"]
    return prefix_problems((entry.prefix for entry in listed), f"{what} ({path})") if entries else []


def flag_values(arguments: Sequence[str], flags: Sequence[str]) -> list[tuple[str, list[str]]]:
    """(flag, its values) for each occurrence of one of `flags` in an argument list."""
    found = []
    for index, word in enumerate(arguments):
        name, has_inline, inline = word.partition("=")
        if name not in flags:
            continue
        values = [inline] if has_inline else []
        if not has_inline:
            for value in arguments[index + 1:]:
                if value.startswith("--"):
                    break
                values.append(value)
        found.append((name, values))
    return found


def job_data_problems(params: Mapping[str, Any], megatron_arguments: Sequence[list[str]], generated: set[str],
                      prefix_keys: Sequence[str] = DEFAULT_PREFIX_KEYS,
                      list_keys: Sequence[str] = DEFAULT_LIST_KEYS) -> list[str]:
    problems: list[str] = []
    for key in prefix_keys:
        if params.get(key):
            problems += prefix_problems(str(params[key]).split(), key)
    for key in list_keys:
        if params.get(key):
            problems += list_problems(str(params[key]), key, generated)
    sources = params.get("data_sources") if params.get("data_mix") else None
    if isinstance(sources, dict):  # a mixture is blended from these lists at build time: each must be readable
        for source, path in sources.items():
            problems += list_problems(str(path), f"data_sources.{source}", generated, entries=False)
    for arguments in megatron_arguments:
        for flag, values in flag_values(arguments, PREFIX_FLAGS):
            problems += prefix_problems(values, flag)
        for flag, values in flag_values(arguments, LIST_FLAGS):
            problems += [problem for value in values for problem in list_problems(value, flag, generated)]
    return _first_per_path(problems)


def _first_per_path(problems: list[str]) -> list[str]:
    """One problem per missing path: DATA_PATH and the --data-path it renders to name the same prefix."""
    kept, seen = [], set()
    for problem in problems:
        path = problem.split(": ", 1)[1]
        if path not in seen:
            seen.add(path)
            kept.append(problem)
    return kept


def consumes_checkpoints(script: str) -> bool:
    return "ckpt claim" in script or "ckpt pending" in script or "convert_helper.sh" in script


def checkpoint_source_problems(consumers: Sequence[tuple[str, str]], producers: set[str]) -> list[tuple[str, str]]:
    """(job, problem) for converter jobs whose RUN_DIR no job trains and that holds no checkpoints yet."""
    problems = []
    for name, run_dir in consumers:
        if _unknown_until_run(run_dir) or os.path.normpath(run_dir) in producers:
            continue
        if not (Path(run_dir) / "checkpoints").is_dir():
            problems.append((name, f"converts checkpoints of {run_dir}, which no job of the campaign trains"
                                   f" and where {Path(run_dir) / 'checkpoints'} does not exist"))
    return problems
