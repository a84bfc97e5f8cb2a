"""Branches a user chose to predict instead of run (`orch predict CONFIG --skip-within`): `predicted.json` in the
campaign's state folder, read by `orch plan` to show them and the GPU-hours they save.

The jobs themselves are cancelled the way `orch cancel` cancels (the store says `cancelled`, with the prediction as
the reason), so a monitor never submits them and `orch run --retry-cancelled` runs them after all. This record only
describes: a branch whose jobs have written output since (it was run after all) is no longer shown as predicted.
Written whole (a temporary file and a rename) under a file lock, so two hosts marking at once lose neither's marks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchestrator.files import read_json, update_json

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
    return _records(read_json(directory / PREDICTED_FILE))


def _records(payload: object) -> dict[str, PredictedBranch]:
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
    def change(payload: object) -> dict:
        records = _records(payload)
        records.update({branch.run: branch for branch in branches})
        return {"version": VERSION, "branches": {run: asdict(branch) for run, branch in sorted(records.items())}}

    update_json(directory / PREDICTED_FILE, change)
