"""Branches a user chose to predict instead of run (`orch predict CONFIG --skip-within`): `predicted.json` in the
campaign's state folder, read by `orch plan` to show them and the GPU-hours they save.

The jobs themselves are cancelled the way `orch cancel` cancels (the store says `cancelled`, with the prediction as
the reason), so a monitor never submits them and `orch run --retry-cancelled` runs them after all. This record only
describes: a branch whose jobs have written output since (it was run after all) is no longer shown as predicted.
Written whole (a temporary file and a rename) under a file lock, so two hosts marking at once lose neither's marks.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchestrator.files import write_atomically

PREDICTED_FILE = "predicted.json"
VERSION = 1


@dataclass(frozen=True)
class PredictedBranch:
    run: str
    """The branch's run folder."""
    jobs: list[str]
    """Its jobs' names (training and, where the campaign has them, conversion and evaluation)."""
    loss: float
    low: float
    high: float
    law: str
    by: str
    """`user@host at time`."""
    fitted_on: list[str] = field(default_factory=list)

    @property
    def relative_width(self) -> float:
        return (self.high - self.low) / self.loss


def read_predicted(directory: Path) -> dict[str, PredictedBranch]:
    """Run folder -> its record; empty when nothing was ever marked (or the file is not orch's)."""
    try:
        payload = json.loads((directory / PREDICTED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    branches = payload.get("branches", {}) if isinstance(payload, dict) else {}
    records = {}
    for run, fields in branches.items():
        try:
            records[run] = PredictedBranch(**fields)
        except TypeError:
            continue  # a record of a newer or foreign layout: not ours to interpret
    return records


def record_predicted(directory: Path, branches: list[PredictedBranch]) -> None:
    """Add (or replace, by run folder) these branches' records."""
    from filelock import FileLock

    directory.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory / f".{PREDICTED_FILE}.lock")):
        records = read_predicted(directory)
        records.update({branch.run: branch for branch in branches})
        payload = {"version": VERSION, "branches": {run: asdict(branch) for run, branch in sorted(records.items())}}
        write_atomically(directory / PREDICTED_FILE, json.dumps(payload, indent=1) + "\n")
