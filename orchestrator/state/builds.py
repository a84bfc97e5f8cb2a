"""The build manifest (`build.json` in the campaign's state folder): each job's script hash as `orch build` last wrote it.

`orch plan --diff` compares a new expansion with it: new jobs, jobs gone from the grid, and jobs whose
script would change. Builds of a subset (filters) update their jobs' entries and keep the others.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from orchestrator.files import write_atomically

MANIFEST_NAME = "build.json"


def read_manifest(directory: Path) -> dict[str, str] | None:
    """{job name: sha256 of its built script}, or None when nothing was built here yet."""
    try:
        data = json.loads((directory / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    scripts = data.get("scripts") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in scripts.items()} if isinstance(scripts, dict) else None


def record_build(digests: Mapping[str, str], directory: Path) -> None:
    """Merge a build's hashes into the manifest (atomically: a crash leaves the old one whole)."""
    merged = dict(read_manifest(directory) or {})
    merged.update(digests)
    write_atomically(directory / MANIFEST_NAME, json.dumps({"scripts": merged}, separators=(",", ":")))
