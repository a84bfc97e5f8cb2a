"""Nodes a campaign stopped sending jobs to: `bad_nodes.json` in the campaign's state folder.

The monitor marks the nodes an attempt ran on when the attempt ended NODE_FAIL or its output showed a node fault
(`node_fault_regex`); later submissions exclude them (`sbatch --exclude`) until they expire. Bounded twice, so a
campaign never starves itself: a mark lasts `hours`, and at most `limit` nodes are excluded at once (the most
recently marked). `orch nodes CONFIG --clear` removes marks. Read-modify-write under a file lock and written whole
(a temporary file and a rename): the monitor and a user's clear on another host never lose each other's change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator.files import read_json, update_json

BAD_NODES_FILE = "bad_nodes.json"
DEFAULT_HOURS = 24.0
DEFAULT_LIMIT = 4


@dataclass(frozen=True)
class BadNode:
    node: str
    marked_at: float
    """Epoch seconds of the (latest) mark."""
    job: str
    """The job whose attempt failed there."""
    why: str
    scheduler_id: str = ""


def read_bad_nodes(directory: Path) -> dict[str, BadNode]:
    return _marks(read_json(directory / BAD_NODES_FILE))


def _marks(payload: object) -> dict[str, BadNode]:
    found = {}
    for fields in payload.get("nodes", []) if isinstance(payload, dict) else []:
        try:
            mark = BadNode(**fields)
        except TypeError:
            continue  # a record of another layout: not ours to interpret
        found[mark.node] = mark
    return found


def excluded(marks: dict[str, BadNode], now: float, hours: float = DEFAULT_HOURS,
             limit: int = DEFAULT_LIMIT) -> list[BadNode]:
    """The marks in force: younger than `hours`, the `limit` most recent, newest first."""
    live = [mark for mark in marks.values() if now - mark.marked_at < hours * 3600]
    return sorted(live, key=lambda mark: (-mark.marked_at, mark.node))[:max(0, limit)]


def _update(directory: Path, change: Callable[[dict[str, BadNode]], dict[str, BadNode]]) -> None:
    def rewrite(payload: object) -> dict:
        marks = change(_marks(payload))
        return {"version": 1, "nodes": [asdict(mark) for mark in sorted(marks.values(), key=lambda m: m.node)]}

    update_json(directory / BAD_NODES_FILE, rewrite)


def mark_bad(directory: Path, nodes: list[str], job: str, why: str, now: float, scheduler_id: str = "") -> None:
    """Mark these nodes (a newer mark replaces an older one of the same node)."""
    def change(marks: dict[str, BadNode]) -> dict[str, BadNode]:
        marks.update({node: BadNode(node, now, job, why, scheduler_id) for node in nodes})
        return marks

    _update(directory, change)


def clear_bad(directory: Path, nodes: list[str] | None = None) -> list[str]:
    """Remove the marks of these nodes (all without a list); returns the nodes cleared."""
    cleared: list[str] = []

    def change(marks: dict[str, BadNode]) -> dict[str, BadNode]:
        chosen = list(marks) if nodes is None else [node for node in nodes if node in marks]
        cleared.extend(sorted(chosen))
        return {node: mark for node, mark in marks.items() if node not in chosen}

    if (directory / BAD_NODES_FILE).exists():
        _update(directory, change)
    return cleared
