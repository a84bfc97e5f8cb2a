"""Blend weighted data-file lists into one (data mixtures for continued pre-training).

A data-file list (Megatron-DeepSpeed's DATA_FILE_LIST) has lines `weight prefix corpus`. To blend
lists L1..Ln with global weights W1..Wn, each list's weights are normalised to sum 1 and scaled by
Wi / (W1 + ... + Wn); the output keeps every line, in input order, as `weight prefix corpus` with the
weight printed with six decimals. Blank lines and lines starting with `#` are ignored.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import UserError
from orchestrator.planning import write_atomically

WEIGHT_DECIMALS = 6


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


@dataclass(frozen=True)
class JobMixture:
    """A job's mixture: `data_sources` (name -> list file, in stage order: the first is D_0, the k-th after
    it the data of stage k), `data_mix` (name -> weight, summing to 1), the job's `data_stage` and the
    sources of its buffer `BUFFER` (by default every stage before the job's, D_0 excluded)."""

    sources: Mapping[str, str]
    weights: Mapping[str, float]
    stage: int | None
    buffer: tuple[str, ...]
    lists: Mapping[str, list[DataFile]]
    """The entries of every list the mixture uses, read (and checked) once."""

    def inputs(self) -> list[tuple[float, list[DataFile]]]:
        """(global weight, entries) per list to blend; the buffer's weight is shared equally by its lists."""
        inputs = []
        for name, weight in self.weights.items():
            if name == BUFFER_SOURCE:
                inputs += [(weight / len(self.buffer), self.lists[member]) for member in self.buffer]
            else:
                inputs.append((weight, self.lists[name]))
        return [(weight, entries) for weight, entries in inputs if weight > 0]


def write_job_mixture(mixture: JobMixture, out_path: str | os.PathLike[str]) -> None:
    """Write the blended list of a job (see `JobMixture`; `job_mixture_inputs` has checked it)."""
    write_atomically(out_path, format_mixture(blend(mixture.inputs())))


DATA_MIX_VARIABLE = "DATA_MIX_FILE"  # the template variable naming a job's blended list (see render.generated)
BUFFER_SOURCE = "BUFFER"  # the data_mix name of a stage's buffer: the union of earlier stages' lists
DATA_STAGE_KEY = "data_stage"
DATA_BUFFER_KEY = "data_buffer"
MIX_SUM_TOLERANCE = 1e-6  # weights written with a few decimals (0.33/0.33/0.34) are fine, 0.9 is not


def _weight(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UserError(f"data_mix.{name}: weight must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise UserError(f"data_mix.{name}: weight must be a number, got {value!r}") from None
    return _parse_weight(repr(number), f"data_mix.{name}", "weight")


def job_mixture_inputs(name: str, params: Mapping[str, Any]) -> JobMixture:
    """A job's mixture from its parameters, every rule checked; a one-line error naming the job and key."""
    sources, mix = params.get("data_sources"), params.get("data_mix")
    if not isinstance(mix, Mapping):
        raise UserError(f"job {name}: data_mix must be a mapping source name -> weight, got {mix!r}")
    if not isinstance(sources, Mapping):
        raise UserError(f"job {name}: data_mix needs data_sources, a mapping source name -> data file list")
    try:
        return _job_mixture(sources, mix, params)
    except UserError as error:
        raise UserError(f"job {name}: {error}") from None


def _job_mixture(sources: Mapping[str, str], mix: Mapping[str, Any], params: Mapping[str, Any]) -> JobMixture:
    known = list(sources)
    unknown = [source for source in mix if source not in sources and source != BUFFER_SOURCE]
    if unknown:
        raise UserError(f"data_mix.{unknown[0]}: no such source in data_sources (known: {', '.join(sorted(known)) or 'none'})")
    weights = {str(source): _weight(str(source), value) for source, value in mix.items()}
    total = sum(weights.values())
    if abs(total - 1.0) > MIX_SUM_TOLERANCE:
        raise UserError(f"data_mix weights sum to {total:g}, not 1 ({', '.join(f'{k}={v:g}' for k, v in weights.items())})")
    stage = _stage(params)
    buffer: tuple[str, ...] = ()
    if stage is not None:
        for source in weights:
            if source != BUFFER_SOURCE and known.index(source) > stage:
                raise UserError(f"data_mix.{source}: data of stage {known.index(source)} in a stage-{stage} job")
        buffer = _buffer(params.get(DATA_BUFFER_KEY), known, stage)
    if weights.get(BUFFER_SOURCE, 0) > 0:
        if stage is None:
            raise UserError(f"data_mix.{BUFFER_SOURCE}: a buffer needs the job's {DATA_STAGE_KEY}")
        if not buffer:
            raise UserError(f"data_mix.{BUFFER_SOURCE}: stage {stage} has no earlier stage to fill its buffer")
    elif params.get(DATA_BUFFER_KEY) is not None and stage is None:
        raise UserError(f"{DATA_BUFFER_KEY}: needs the job's {DATA_STAGE_KEY}")
    used = [source for source in (*weights, *buffer) if source != BUFFER_SOURCE]
    lists = {source: read_data_list(sources[source]) for source in dict.fromkeys(used)}
    return JobMixture(sources, weights, stage, buffer, lists)


def _stage(params: Mapping[str, Any]) -> int | None:
    value = params.get(DATA_STAGE_KEY)
    if value is None:
        return None
    try:
        stage = int(str(value))
    except ValueError:
        raise UserError(f"{DATA_STAGE_KEY}: must be a stage number (0 = D_0), got {value!r}") from None
    if stage < 0:
        raise UserError(f"{DATA_STAGE_KEY}: must be a stage number (0 = D_0), got {value!r}")
    return stage


def _buffer(named: Any, known: list[str], stage: int) -> tuple[str, ...]:
    if named is None:
        return tuple(known[1:stage])
    if not isinstance(named, list) or not all(isinstance(item, str) for item in named):
        raise UserError(f"{DATA_BUFFER_KEY}: must be a list of data_sources names, got {named!r}")
    for source in named:
        if source not in known:
            raise UserError(f"{DATA_BUFFER_KEY}: {source!r} is not in data_sources (known: {', '.join(known)})")
        if known.index(source) >= stage:
            raise UserError(f"{DATA_BUFFER_KEY}: {source} is stage {known.index(source)}, not a stage before {stage}")
    return tuple(named)
