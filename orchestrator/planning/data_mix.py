"""Blend weighted data-file lists into one (data mixtures for continued pre-training).

A data-file list (Megatron-DeepSpeed's DATA_FILE_LIST) has lines `weight prefix corpus`. To blend
lists L1..Ln with global weights W1..Wn, each list's weights are normalised to sum 1 and scaled by
Wi / (W1 + ... + Wn); the output keeps every line, in input order, as `weight prefix corpus` with the
weight printed with six decimals. Blank lines and lines starting with `#` are ignored.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import UserError
from orchestrator.planning import write_atomically

WEIGHT_DECIMALS = 6
SUM_TOLERANCE = 1e-9


@dataclass(frozen=True)
class DataFile:
    weight: float
    prefix: str
    corpus: str


def _parse_weight(text: str, where: str, what: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        raise UserError(f"{where}: {what} {text!r} is not a number") from None
    if not math.isfinite(weight) or weight < 0:
        raise UserError(f"{where}: {what} must be a non-negative number, got {text}")
    return weight


def read_data_list(path: str | os.PathLike[str]) -> list[DataFile]:
    """The entries of one list; UserError naming file:line on a malformed line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise UserError(f"{path}: cannot read data file list ({error.strerror})") from None
    entries: list[DataFile] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        where = f"{path}:{number}"
        if len(fields) != 3:
            raise UserError(f"{where}: expected 'weight prefix corpus', got {line.strip()!r}")
        entries.append(DataFile(_parse_weight(fields[0], where, "weight"), fields[1], fields[2]))
    if not entries:
        raise UserError(f"{path}: data file list has no entries")
    if sum(entry.weight for entry in entries) <= 0:
        raise UserError(f"{path}: the weights sum to 0; at least one must be positive")
    return entries


def blend(inputs: Sequence[tuple[float, Sequence[DataFile]]]) -> list[DataFile]:
    """Blend (global weight, entries) pairs; the result's weights sum to 1."""
    if not inputs:
        raise UserError("no data file lists to blend")
    total_global = sum(weight for weight, _ in inputs)
    if any(weight < 0 for weight, _ in inputs) or total_global <= 0:
        raise UserError("global weights must be non-negative and at least one positive")
    blended: list[DataFile] = []
    for global_weight, entries in inputs:
        list_total = sum(entry.weight for entry in entries)
        share = global_weight / total_global
        blended += [DataFile(entry.weight / list_total * share, entry.prefix, entry.corpus) for entry in entries]
    return blended


def blend_files(inputs: Sequence[tuple[float, str]]) -> list[DataFile]:
    """Blend (global weight, list file) pairs."""
    return blend([(weight, read_data_list(path)) for weight, path in inputs])


def parse_mix_arguments(values: Sequence[str]) -> list[tuple[float, str]]:
    """`W1 LIST1 W2 LIST2 ...` from the command line -> [(W1, LIST1), ...]."""
    if not values or len(values) % 2:
        raise UserError(f"--input takes pairs 'WEIGHT LIST' (W1 LIST1 W2 LIST2 ...), got {len(values)} values")
    pairs = []
    for index in range(0, len(values), 2):
        weight = _parse_weight(values[index], f"--input pair {index // 2 + 1}", "global weight")
        pairs.append((weight, values[index + 1]))
    return pairs


def format_mixture(entries: Sequence[DataFile]) -> str:
    return "".join(f"{entry.weight:.{WEIGHT_DECIMALS}f} {entry.prefix} {entry.corpus}\n" for entry in entries)


def write_job_mixture(
    data_sources: Mapping[str, str],
    data_mix: Mapping[str, float],
    out_path: str | os.PathLike[str],
) -> None:
    """Write the blended list of a job whose config has `data_sources` (name -> list file) and
    `data_mix` (name -> weight). Weights should sum to 1; otherwise they are normalised with a
    warning on stderr. Sources without a weight in `data_mix` are not used."""
    check_job_mixture(data_sources, data_mix)
    inputs = [(float(weight), data_sources[name]) for name, weight in data_mix.items()]
    total = sum(weight for weight, _ in inputs)
    if total > 0 and abs(total - 1) > SUM_TOLERANCE:
        print(f"orch: warning: data_mix weights sum to {total:g}, not 1; normalising them", file=sys.stderr)
    write_atomically(out_path, format_mixture(blend_files(inputs)))


DATA_MIX_VARIABLE = "DATA_MIX_FILE"  # the template variable naming a job's blended list (see render.generated)


def job_mixture_inputs(name: str, params: Mapping[str, Any]) -> tuple[Mapping[str, str], Mapping[str, float]]:
    """A job's `data_sources` and `data_mix` mappings, or a one-line error naming the job."""
    sources, mix = params.get("data_sources"), params.get("data_mix")
    if not isinstance(mix, Mapping):
        raise UserError(f"job {name}: data_mix must be a mapping source name -> weight, got {mix!r}")
    if not isinstance(sources, Mapping):
        raise UserError(f"job {name}: data_mix needs data_sources, a mapping source name -> data file list")
    return sources, mix


def check_job_mixture(data_sources: Mapping[str, str], data_mix: Mapping[str, float]) -> None:
    unknown = sorted(set(data_mix) - set(data_sources))
    if unknown:
        raise UserError(
            f"data_mix.{unknown[0]}: no such source in data_sources (known: {', '.join(sorted(data_sources)) or 'none'})"
        )
    for name, weight in data_mix.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise UserError(f"data_mix.{name}: weight must be a number, got {weight!r}")
        _parse_weight(str(weight), f"data_mix.{name}", "weight")
        read_data_list(data_sources[name])
