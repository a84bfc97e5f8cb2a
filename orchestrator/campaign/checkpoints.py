"""Which checkpoints of a run are complete, judged by the order in which the trainers write them.

Layouts under `RUN_DIR/checkpoints/` (several may be mixed), as the writers name them:
- Megatron-LM (NVIDIA/Megatron-LM @d98e8a64, `megatron/training/checkpointing.py`): `iter_0000100/`
  and, written last by rank 0 once every rank has saved, `latest_checkpointed_iteration.txt` (`100`).
  Legacy torch format: one folder per model-parallel rank, `mp_rank_TT[_PPP][_EEE]/model_optim_rng.pt`
  (`get_checkpoint_name`; `distrib_optim.pt` beside it with the distributed optimizer). torch_dist
  format (`megatron/core/dist_checkpointing/serialization.py: save`): `*.distcp` shards, torch's
  `.metadata`, `common.pt`, and `metadata.json`, which Megatron writes after everything else.
- DeepSpeed (microsoft/DeepSpeed @38327e07, `deepspeed/runtime/engine.py`): `global_step100/` with
  `mp_rank_TT_model_states.pt` (ZeRO 0-2), `zero_pp_rank_D_mp_rank_TT_model_states.pt` (ZeRO-3, one per
  data-parallel rank), `[bf16_]zero_pp_rank_D_mp_rank_TT_optim_states.pt`, pipeline layers
  `layer_LL-model_TT-model_states.pt` (`runtime/pipe/module.py`), and `latest` (`global_step100`) written
  by rank 0 after its own files. Universal checkpoints (`checkpoint/ds_to_universal.py`):
  `global_step100_universal/` with `zero/`, named by `latest_universal` once the conversion is done.
- Megatron-DeepSpeed (argonne-lcf @ffa3456d, `megatron/checkpointing.py`): DeepSpeed's layout, then a
  barrier, then Megatron's `latest_checkpointed_iteration.txt`: that tracker governs when present.

A save is complete when every file of it is whole (`whole_files`: each torch.save zip ends with its end
record, every .distcp is as long as `.metadata` records, ...), every file its format implies is there (every
rank of the grid seen in any folder of the same layout in the run), and its commit point names it: Megatron's
tracker (after the barrier) and `latest_universal` are commit points, so an iteration above them is never
complete; DeepSpeed's `latest` is not (rank 0 writes it at ZeRO 0-2 without waiting), nor is an empty or
unreadable tracker: there the whole files decide. A torch_dist folder without any tracker is committed by its
own metadata.json (megatron-core alone writes no tracker). Legacy `iter_*` folders without a tracker file have
no finished save.

Conversion bookkeeping lives next to the checkpoints:
`RUN_DIR/converted_checkpoints/iter_<N>.done` (converted) and `RUN_DIR/in_progress_checkpoints/iter_<N>.lock`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from itertools import product
from pathlib import Path

from orchestrator.campaign.whole_files import deepspeed_dp_world_size, file_problem, torch_dist_problem

MEGATRON_TRACKER = "latest_checkpointed_iteration.txt"
DEEPSPEED_TRACKER = "latest"
UNIVERSAL_TRACKER = "latest_universal"

_ITER_DIR = re.compile(r"iter_(\d+)\Z")
_GLOBAL_STEP_DIR = re.compile(r"global_step(\d+)\Z")
_UNIVERSAL_DIR = re.compile(r"global_step(\d+)_universal\Z")
_MEGATRON_TRACKED = re.compile(r"(\d+)\Z")  # `release` (a converted release checkpoint) is no iteration
_DEEPSPEED_TRACKED = re.compile(r"global_step(\d+)\Z")
_UNIVERSAL_TRACKED = re.compile(r"global_step(\d+)_universal\Z")
_RANK_DIR = re.compile(r"mp_rank_(\d{2})(?:_(\d{3}))?(?:_(\d{3}))?\Z")
_MODEL_FILES = ("model_optim_rng.pt", "model_optim_rng.npz")  # torch format; the tinylm example's numpy twin
_DS_MODEL = re.compile(r"mp_rank_(\d{2})_model_states\.pt\Z")
_DS_ZERO3_MODEL = re.compile(r"zero_pp_rank_(\d+)_mp_rank_(\d{2})_model_states\.pt\Z")
_DS_OPTIM = re.compile(r"(bf16_)?zero_pp_rank_(\d+)_mp_rank_(\d{2})_optim_states\.pt\Z")
_DS_LAYER = re.compile(r"layer_(\d{2})-model_(\d{2})-model_states\.pt\Z")
_TORCH_DIST_FILES = (".metadata", "metadata.json", "common.pt")


@dataclass(frozen=True)
class RunLayout:
    """The directories of one run (pretrain or a cooldown branch) under its RUN_DIR."""

    run_dir: Path

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def converted(self) -> Path:
        return self.run_dir / "converted_checkpoints"

    @property
    def in_progress(self) -> Path:
        return self.run_dir / "in_progress_checkpoints"

    def done_marker(self, iteration: int) -> Path:
        return self.converted / f"iter_{iteration}.done"

    def lock_file(self, iteration: int) -> Path:
        return self.in_progress / f"iter_{iteration}.lock"


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint folder and the verdict on it."""

    iteration: int
    path: Path
    layout: str
    complete: bool
    reason: str
    universal: bool = False
    """A `global_step<N>_universal/` folder (governed by `latest_universal`, not the training tracker)."""


def iteration_dir_name(iteration: int, deepspeed: bool = False) -> str:
    return f"global_step{iteration}" if deepspeed else f"iter_{iteration:07d}"


def _iteration_folders(checkpoints: Path) -> list[tuple[int, Path, bool]]:
    """(iteration, folder, universal?) for every checkpoint folder, symlinks followed (a linked checkpoint counts)."""
    try:
        entries = list(os.scandir(checkpoints))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for entry in entries:
        universal = _UNIVERSAL_DIR.match(entry.name)
        match = universal or _ITER_DIR.match(entry.name) or _GLOBAL_STEP_DIR.match(entry.name)
        if match and entry.is_dir():
            found.append((int(match.group(1)), Path(entry.path), bool(universal)))
    return sorted(found, key=lambda item: (item[0], item[2], item[1].name))


def list_checkpoint_dirs(checkpoints: Path) -> dict[int, Path]:
    """Iteration -> its training checkpoint folder (`iter_*` or `global_step*`; a universal twin only without one)."""
    found: dict[int, Path] = {}
    for iteration, path, _universal in _iteration_folders(checkpoints):
        found.setdefault(iteration, path)
    return found


def _read_tracker(path: Path, pattern: re.Pattern[str]) -> int | None:
    try:
        match = pattern.match(path.read_text().strip())
    except OSError:
        return None
    return int(match.group(1)) if match else None


def trackers(checkpoints: Path) -> dict[str, int]:
    """Tracker file name -> the iteration it names, for each tracker present and readable."""
    found = {}
    for name, pattern in ((MEGATRON_TRACKER, _MEGATRON_TRACKED), (DEEPSPEED_TRACKER, _DEEPSPEED_TRACKED),
                          (UNIVERSAL_TRACKER, _UNIVERSAL_TRACKED)):
        value = _read_tracker(checkpoints / name, pattern)
        if value is not None:
            found[name] = value
    return found


def tracked_iteration(checkpoints: Path) -> int | None:
    """The newest finished training save: Megatron's tracker when present (written after the barrier), else `latest`."""
    found = trackers(checkpoints)
    return found.get(MEGATRON_TRACKER, found.get(DEEPSPEED_TRACKER))


# -- what a folder holds -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Contents:
    layout: str
    grids: dict[str, set[tuple[int, ...]]]  # file kind -> the rank tuples present
    problem: str = ""  # a format-level reason it is not complete
    entries: tuple[os.DirEntry, ...] = ()  # the folder's listing, read once


def _contents(path: Path) -> _Contents:
    try:
        entries = list(os.scandir(path))
    except OSError:
        return _Contents("unreadable", {}, "cannot read the folder")
    names = {entry.name for entry in entries}
    if any(name.endswith(".distcp") for name in names) or names & set(_TORCH_DIST_FILES):
        return _Contents("torch_dist", {}, _torch_dist_problem(path, names))
    grids: dict[str, set[tuple[int, ...]]] = {}
    for entry in entries:
        optim = _DS_OPTIM.match(entry.name)  # the most numerous files of a large run: looked at first
        if optim:
            grids.setdefault("zero_pp_rank_D_mp_rank_TT_optim_states.pt", set()).add((int(optim.group(2)), int(optim.group(3))))
            continue
        rank = _RANK_DIR.match(entry.name)
        if rank and entry.is_dir():
            key = tuple(int(group) for group in rank.groups() if group is not None)
            folder = Path(entry.path)
            if any((folder / name).is_file() for name in _MODEL_FILES):
                grids.setdefault("model_optim_rng", set()).add(key)
            grids.setdefault("rank folder", set()).add(key)
            continue
        for kind, pattern in (("mp_rank_TT_model_states.pt", _DS_MODEL),
                              ("zero_pp_rank_D_mp_rank_TT_model_states.pt", _DS_ZERO3_MODEL),
                              ("layer_LL-model_TT-model_states.pt", _DS_LAYER)):
            match = pattern.match(entry.name)
            if match:
                grids.setdefault(kind, set()).add(tuple(int(g) for g in match.groups()))
    listing = tuple(entries)
    if "rank folder" in grids:
        return _Contents("torch", grids, entries=listing)
    if "zero_pp_rank_D_mp_rank_TT_model_states.pt" in grids:
        return _Contents("deepspeed ZeRO-3", grids, entries=listing)
    if "layer_LL-model_TT-model_states.pt" in grids:
        return _Contents("deepspeed pipeline", grids, entries=listing)
    if "mp_rank_TT_model_states.pt" in grids:
        universal = "universal" if (path / "zero").is_dir() else "deepspeed"
        return _Contents(universal, grids, entries=listing)
    if (path / "zero").is_dir():
        return _Contents("universal", grids, "no mp_rank_TT_model_states.pt beside zero/")
    return _Contents("unknown", grids, "no model files in a known format")


def _torch_dist_problem(path: Path, names: set[str]) -> str:
    # metadata.json is `CheckpointingConfig` (`sharded_backend`, ...), megatron/core/dist_checkpointing/core.py @d98e8a64
    if "metadata.json" not in names:
        return "torch_dist without metadata.json, which Megatron writes after every shard"
    try:
        backend = json.loads((path / "metadata.json").read_text()).get("sharded_backend")
    except (OSError, ValueError, AttributeError):
        return "torch_dist metadata.json is unreadable"
    if backend == "torch_dist" and ".metadata" not in names:
        return "torch_dist without torch's .metadata"
    return ""


_ZERO_SHARDS = ("zero_pp_rank_D_mp_rank_TT_optim_states.pt", "zero_pp_rank_D_mp_rank_TT_model_states.pt")
_RANK0_MODEL_STATES = ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_model_states.pt")


def _declared_dp_size(path: Path) -> int | None:
    """The ZeRO shard count rank 0's model states declare (read only when no folder shows a second shard)."""
    for name in _RANK0_MODEL_STATES:
        if (path / name).is_file():
            return deepspeed_dp_world_size(path / name)
    return None


def _missing(path: Path, contents: _Contents, run_grids: dict[str, set[tuple[int, ...]]]) -> list[str]:
    """Files of the rank grid that are absent: every index up to the largest seen in this folder or in
    any folder of the same layout in the run (a rank that never wrote leaves no name to notice it by). When no
    folder shows a second ZeRO shard (a run's first save, rank 1 not yet started), the shard count comes from
    the `dp_world_size` rank 0's model states record."""
    missing = []
    for kind in sorted(contents.grids):
        if kind == "model_optim_rng":
            continue  # checked per rank folder below
        present = contents.grids[kind]
        seen = present | run_grids.get(kind, set())
        if kind == "layer_LL-model_TT-model_states.pt":
            width = max(rank[1] for rank in seen) + 1
            expected = {(layer, tp) for layer in {rank[0] for rank in seen} for tp in range(width)}
        else:
            sizes = [max(rank[axis] for rank in seen) + 1 for axis in range(len(next(iter(seen))))]
            if kind in _ZERO_SHARDS and sizes[0] == 1:
                sizes[0] = _declared_dp_size(path) or 1
            expected = set(product(*(range(size) for size in sizes)))
        missing += [_describe_rank(kind, rank) for rank in expected - present]
    if contents.layout == "torch":
        for rank in contents.grids["rank folder"] - contents.grids.get("model_optim_rng", set()):
            missing.append(f"{_rank_folder(rank)}/model_optim_rng.pt")
    return sorted(set(missing))


def _rank_folder(rank: tuple[int, ...]) -> str:
    return "mp_rank_" + "_".join([f"{rank[0]:02d}", *(f"{index:03d}" for index in rank[1:])])


def _describe_rank(kind: str, rank: tuple[int, ...]) -> str:
    if kind in ("rank folder", "model_optim_rng"):
        return f"{_rank_folder(rank)}/model_optim_rng.pt"
    if kind == "mp_rank_TT_model_states.pt":
        return f"mp_rank_{rank[0]:02d}_model_states.pt"
    if kind == "layer_LL-model_TT-model_states.pt":
        return f"layer_{rank[0]:02d}-model_{rank[1]:02d}-model_states.pt"
    suffix = "model_states" if "model_states" in kind else "optim_states"
    return f"zero_pp_rank_{rank[0]}_mp_rank_{rank[1]:02d}_{suffix}.pt"


# -- verdicts ------------------------------------------------------------------------------------------
def _files_problem(path: Path, contents: _Contents) -> str:
    """The first file of the folder that is not whole (`whole_files`), "" when every one is."""
    if contents.layout == "torch_dist":
        problem = torch_dist_problem(path)
        return problem or file_problem(path / "common.pt")
    problems: list[str] = []
    for entry in contents.entries:
        if entry.is_dir():
            if _RANK_DIR.match(entry.name):  # Megatron's legacy layout: mp_rank_TT[_PPP]/model_optim_rng.pt
                for name in (*_MODEL_FILES, "distrib_optim.pt"):
                    candidate = os.path.join(entry.path, name)
                    if os.path.isfile(candidate):
                        problem = file_problem(candidate)
                        if problem:
                            problems.append(f"{entry.name}/{problem}")
            continue
        problem = file_problem(entry.path, entry.name)
        if problem:
            problems.append(problem)
    return min(problems, default="")  # the same file named whatever order the folder lists them in


def _governing_tracker(path: Path, universal: bool, found: dict[str, int], megatron_file: bool,
                       layout: str) -> tuple[str, bool]:
    """(tracker name, is it a commit point) for one folder.

    Megatron's tracker is written once every rank has saved (after a barrier, in Megatron-LM and
    Megatron-DeepSpeed alike) and `latest_universal` once a conversion is done: commit points. DeepSpeed's
    `latest` is not (rank 0 writes it at ZeRO 0-2 without waiting for the others): a hint. A Megatron tracker
    that is there but empty or unreadable (its writer died in it) is no commit point either."""
    if universal:
        return UNIVERSAL_TRACKER, True
    if MEGATRON_TRACKER in found:
        return MEGATRON_TRACKER, True
    if path.name.startswith("global_step") or megatron_file:
        return (DEEPSPEED_TRACKER if path.name.startswith("global_step") else MEGATRON_TRACKER), False
    # megatron-core alone writes no tracker: a torch_dist folder's metadata.json, written last, commits it.
    return MEGATRON_TRACKER, layout != "torch_dist"


def inspect_checkpoints(checkpoints: Path) -> list[Checkpoint]:
    """Every checkpoint folder of a run with whether it is complete and why (sorted by iteration)."""
    found = trackers(checkpoints)
    megatron_file = (checkpoints / MEGATRON_TRACKER).exists()
    folders = [(iteration, path, universal, _contents(path)) for iteration, path, universal in _iteration_folders(checkpoints)]
    run_grids: dict[str, dict[str, set[tuple[int, ...]]]] = {}
    for _iteration, _path, _universal, contents in folders:
        for kind, ranks in contents.grids.items():
            run_grids.setdefault(contents.layout, {}).setdefault(kind, set()).update(ranks)
    verdicts = []
    for iteration, path, universal, contents in folders:
        tracker_name, commit_point = _governing_tracker(path, universal, found, megatron_file, contents.layout)
        limit = found.get(tracker_name)
        if commit_point and limit is None:
            verdict = (False, f"no {tracker_name} tracker yet: no save has finished")
        elif commit_point and iteration > limit:
            verdict = (False, f"above the tracker ({tracker_name} = {limit}): being written or died part-way")
        elif contents.problem:
            verdict = (False, contents.problem)
        else:
            missing = _missing(path, contents, run_grids.get(contents.layout, {}))
            broken = "" if missing else _files_problem(path, contents)
            if missing:
                shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
                verdict = (False, f"missing {shown}")
            elif broken:
                verdict = (False, f"not whole: {broken}")
            elif commit_point:
                verdict = (True, f"complete ({tracker_name} = {limit}), every file whole")
            else:
                named = f"global_step{limit}" if tracker_name == DEEPSPEED_TRACKER else str(limit)
                hint = f"{tracker_name} = {named}" if limit is not None else f"{tracker_name} empty, unreadable or absent"
                verdict = (True, f"complete: every file whole ({hint}, a hint only)")
        verdicts.append(Checkpoint(iteration, path, contents.layout, *verdict, universal=universal))
    return verdicts


def complete_iterations(checkpoints: Path) -> list[int]:
    """Sorted iterations with a complete checkpoint (training or universal)."""
    return sorted({checkpoint.iteration for checkpoint in inspect_checkpoints(checkpoints) if checkpoint.complete})
