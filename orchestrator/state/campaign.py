"""Where one campaign keeps its state: `.orch/campaigns/<config stem>-<hash>/`, one folder per config file.

A campaign is its config, not its folder: AutoExperiment users keep several configs side by side, and two of
them may name jobs alike. Each config gets its own store, monitor lock, build manifest, kept scripts and
monitor log, so two campaigns in one folder run side by side and never see each other's jobs. The folder's
`.orch/local/` (the local scheduler's jobs) stays shared: its job ids are unique across campaigns.

Stores written before this layout (`.orch/state.db`, one per folder) move into the folder of the first config
whose jobs they hold, the first time that campaign's state is opened.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from orchestrator.state.store import DB_NAME, state_dir

CAMPAIGNS_DIR = "campaigns"
# What a folder-wide store of an older orch held besides the database (moved with it).
_LEGACY_FILES = ("build.json", "monitor.log", "monitor.lock", "scripts", f"{DB_NAME}-wal", f"{DB_NAME}-shm")


def campaign_id(config_path: str | Path, workdir: str | Path = ".") -> str:
    """`<stem>-<8 hex>`: the config's name for people, a hash of its path (relative to the folder) for uniqueness."""
    config = Path(os.path.abspath(config_path))
    base = Path(os.path.abspath(workdir))
    try:
        key = config.relative_to(base).as_posix()
    except ValueError:
        key = config.as_posix()  # a config outside the folder: its absolute path names it
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", config.stem) or "campaign"
    return f"{stem}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def campaign_dir(config_path: str | Path, workdir: str | Path = ".") -> Path:
    return state_dir(workdir) / CAMPAIGNS_DIR / campaign_id(config_path, workdir)


def legacy_store_path(workdir: str | Path = ".") -> Path:
    return state_dir(workdir) / DB_NAME


def migrate_legacy_store(directory: Path, job_names: Iterable[str], workdir: str | Path = ".") -> bool:
    """Move a folder-wide store of an older orch into `directory` if it holds any of these jobs; True if moved."""
    legacy = legacy_store_path(workdir)
    if (directory / DB_NAME).exists() or not legacy.exists():
        return False
    if not _holds_any(legacy, set(job_names)):
        return False
    directory.mkdir(parents=True, exist_ok=True)
    os.replace(legacy, directory / DB_NAME)  # the database first: once it moved, the campaign is migrated
    for name in _LEGACY_FILES:
        source = legacy.parent / name
        if source.exists() and not (directory / name).exists():
            os.replace(source, directory / name)
    return True


def _holds_any(database: Path, names: set[str]) -> bool:
    try:
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            stored = {row[0] for row in connection.execute("SELECT name FROM jobs")}
        finally:
            connection.close()
    except sqlite3.Error:
        return False  # not a store we can read: leave it where it is
    return bool(stored & names)
