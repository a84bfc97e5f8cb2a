"""Write rendered scripts: all or nothing, atomically, and only where the content changed."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from orchestrator.errors import UserError
from orchestrator.jobs import Job
from orchestrator.render import job_name_warnings, render_job


@dataclass(frozen=True)
class BuildResult:
    written: int
    unchanged: int
    warnings: list[str]
    digests: dict[str, str]
    """Each job's script content hash (sha256), for the build manifest behind `orch plan --diff`."""


def content_digest(content: bytes) -> str:
    """The sha256 of a file's content: how the build manifest, provenance and `.orch/scripts/` name a script."""
    return hashlib.sha256(content).hexdigest()


def render_all(jobs: Sequence[Job]) -> list[tuple[Job, str]]:
    """Render every job first, so a bad template stops the build before any file is written."""
    return [(job, render_job(job)) for job in jobs]


def _existing_content(path: str) -> bytes | None:
    try:
        with open(path, "rb") as existing:
            return existing.read()
    except FileNotFoundError:
        return None


def _write(path: str, content: bytes, exists: bool) -> None:
    """Replace an existing script atomically (a reader never sees half of it); create a new one directly.

    A new script cut short by a crash is simply rewritten by the next build (its content differs),
    and nothing can have submitted a script that did not exist; skipping the rename halves the cost.
    """
    if not exists:
        try:
            with open(path, "xb") as file:
                file.write(content)
            return
        except FileExistsError:
            pass  # appeared meanwhile: fall through to the atomic replace
    temporary = f"{path}.orch-tmp-{os.getpid()}"
    with open(temporary, "wb") as file:
        file.write(content)
    os.replace(temporary, path)


def _make_parent_dirs(paths: Iterable[str]) -> dict[str, set[str] | None]:
    """Create each path's directory; {directory: the names already in it} (None where it was just made)."""
    listed: dict[str, set[str] | None] = {}
    for path in paths:
        parent = _split(path)[0]
        if parent in listed:
            continue
        try:
            listed[parent] = set(os.listdir(parent or "."))
        except FileNotFoundError:
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as error:
                raise UserError(f"cannot create directory {parent}: {error.strerror}") from None
            listed[parent] = None
        except OSError as error:
            raise UserError(f"cannot read directory {parent}: {error.strerror}") from None
    return listed


def build_scripts(jobs: Sequence[Job], rendered: Sequence[tuple[Job, str]] | None = None) -> BuildResult:
    """Render all jobs (unless given their rendering), then write each script whose content changed (paths
    relative to the cwd)."""
    rendered = render_all(jobs) if rendered is None else rendered
    warnings = job_name_warnings(rendered)
    # Like AutoExperiment: create the script's directory and the output file's directory.
    present = _make_parent_dirs(job.sbatch_script for job in jobs)
    _make_parent_dirs(job.output_file for job in jobs)
    written = unchanged = 0
    digests: dict[str, str] = {}
    for job, script in rendered:
        content = script.encode("utf-8")
        digests[job.name] = content_digest(content)
        directory, name = _split(job.sbatch_script)
        names = present.get(directory)
        try:
            # One listing per folder tells which scripts exist: a new script costs one open, not two.
            existing = _existing_content(job.sbatch_script) if names is not None and name in names else None
            if existing == content:
                unchanged += 1
                continue
            _write(job.sbatch_script, content, exists=existing is not None)
        except OSError as error:
            raise UserError(f"cannot write {job.sbatch_script}: {error.strerror}") from None
        written += 1
    return BuildResult(written=written, unchanged=unchanged, warnings=warnings, digests=digests)


def script_path_clashes(jobs: Sequence[Job]) -> list[str]:
    """Script paths shared by several jobs (one would overwrite the other)."""
    seen: dict[tuple[str, str], str] = {}
    clashes: list[str] = []
    for job in jobs:
        directory, name = _split(job.sbatch_script)
        other = seen.setdefault((_normal_directory(directory), name), job.name)
        if other != job.name:
            clashes.append(f"{job.sbatch_script} ({other}, {job.name})")
    return clashes


def _split(path: str) -> tuple[str, str]:
    """(folder, name) as the text spells them ("" for the working directory); cheaper than os.path.split, which
    matters at 10^5 scripts. The folder may keep trailing slashes ("a//b" -> "a/"): it is only listed and compared
    through `_normal_directory`."""
    folder, _, name = path.rpartition("/")
    return (folder or ("/" if path.startswith("/") else "")), name


@lru_cache(maxsize=4096)
def _normal_directory(directory: str) -> str:
    """A folder's spelling as pathlib normalises it (`a//b`, `./a`): one Path per folder, not per script."""
    return str(Path(directory)) if directory else "."
