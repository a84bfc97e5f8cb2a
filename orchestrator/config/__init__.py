"""Config engine: YAML in, resolved `Job`s out. Pure: no rendering, no submission, no files written.

    jobs = load_jobs("configs/quickstart.yaml", fixes=["lr=1e-3"], filters=["MODE=train"])
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from orchestrator.config.grid import ATOMIC_KEYS, expand_grid
from orchestrator.config.interpolation import resolve_interpolations
from orchestrator.config.jobs_from_params import check_unique_names, job_from_params
from orchestrator.config.resolve import ResolutionError, Resolver, autoexperiment_fixed_point
from orchestrator.config.selection import apply_fixes, parse_filters, select_jobs
from orchestrator.config.tree import iter_strings
from orchestrator.config.yaml_loader import line_of_key, load_config_file
from orchestrator.errors import UserError
from orchestrator.jobs import Job

__all__ = ["expand_config", "load_jobs", "load_config_file"]


def _job_label(params: Mapping[str, Any], index: int) -> str:
    name = params.get("name")
    if type(name) is str and "{" not in name:
        return repr(name)
    return f"#{index + 1}"


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Building 10^5 parameter dicts triggers the cycle collector over and over; none of them form cycles."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def expand_config(config: Mapping[str, Any], source: str = "config", text: str = "") -> list[Job]:
    """Expand a config mapping into its jobs, in AutoExperiment's order.

    `source` and `text` (the file's name and content) only serve error messages (file:line).
    OmegaConf interpolations (`${key}`) are resolved first, as AutoExperiment's DictConfig does.
    """
    config = resolve_interpolations(dict(config), source, text)
    with _cyclic_gc_paused():
        return _expand_config(config, source, text)


def _has_brace_escapes(config: Any) -> bool:
    """Some string of the config holds `{{` or `}}` (text that AutoExperiment formats again)."""
    return any("{{" in text or "}}" in text for text in iter_strings(config))


def _expand_config(config: Mapping[str, Any], source: str, text: str) -> list[Job]:
    resolver = Resolver()
    jobs: list[Job] = []
    escapes = _has_brace_escapes(config)
    for index, (signature, params) in enumerate(expand_grid(config)):
        raw = dict(params) if escapes else params
        try:
            resolver.resolve(params, signature)  # also the checks: undefined names, cycles, bad expr()
            for key in ATOMIC_KEYS & params.keys():
                if isinstance(params[key], (dict, list)):
                    resolver.resolve_nested(params, key)
        except ResolutionError as error:
            label = _job_label(params, index)
            raise UserError(f"{line_of_key(source, text, error.key)}: job {label}, key {error.key!r}: {error}") from None
        if escapes:
            params = autoexperiment_fixed_point(raw)  # what escapes re-format depends on the pass order
        jobs.append(job_from_params(params, index))
    check_unique_names(jobs, varying_keys=_keys_in_order(config))
    return jobs


def _keys_in_order(config: Mapping[str, Any]) -> list[str]:
    """Every key of the config tree, outermost first (the candidates to add to a clashing `name`)."""
    keys: list[str] = []
    pending: list[Any] = [config]
    while pending:
        node = pending.pop(0)
        if isinstance(node, dict):
            for key, value in node.items():
                keys.append(str(key))
                pending.append(value)
        elif isinstance(node, list):
            pending.extend(item for item in node if isinstance(item, dict))
    return list(dict.fromkeys(keys))


def load_jobs(
    config_path: str | Path, fixes: Sequence[str] = (), filters: Sequence[str] = (), typed_fixes: Sequence[str] = ()
) -> list[Job]:
    """Load, fix (`-f KEY=VALUE`), expand, resolve and filter (`KEY=V1,V2`) a campaign's jobs.

    `typed_fixes` (`-F KEY=VALUE`) are typed as YAML would type them; `fixes` stay text, as in AutoExperiment.
    """
    config, text = load_config_file(config_path)
    config = apply_fixes(config, fixes, typed_fixes)
    jobs = expand_config(config, source=str(config_path), text=text)
    return select_jobs(jobs, parse_filters(filters))


def option_names(config_path: str | Path) -> frozenset[str]:
    """The names of the config's named options (`PHASE: [- pretrain: {...}]`: `pretrain`). AutoExperiment's
    expansion leaves each behind as a key naming the option's next key (`pretrain: TRAIN_START`), which
    templates may read but a reader of `orch plan --json` should not have to."""
    config, _ = load_config_file(config_path)
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            if node and all(isinstance(item, dict) and len(item) == 1 for item in node):
                names.update(str(next(iter(item))) for item in node)
            for item in node:
                walk(item)
    walk(config)
    return frozenset(names)
