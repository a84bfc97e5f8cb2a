"""`orch plan CONFIG --diff [--show NAME]`: the expansion now against what `orch build` last wrote.

New jobs, jobs gone from the grid (only without filters: a filtered plan sees part of the grid), jobs
whose rendered script would change, and, among those, jobs running an older script right now (the
monitor lets them finish with it and never resubmits them for that).
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from orchestrator.errors import UserError
from orchestrator.jobs import Job
from orchestrator.render.write import content_digest

SHOWN = 20  # names listed per section; the counts are always whole


def _old_script(job: Job, digest: str, directory: Path) -> str | None:
    """The script as it was built: the file on disk while it still has that content, else a kept copy."""
    from orchestrator.accounting.provenance import kept_script

    try:
        content = Path(job.sbatch_script).read_bytes()
        if content_digest(content) == digest:
            return content.decode(errors="replace")
    except OSError:
        pass
    return kept_script(directory, digest)


def _running_scripts(jobs: list[Job], directory: Path) -> dict[str, str]:
    """Jobs with a submission in the queue -> the hash of the script it was submitted with."""
    from orchestrator.state import StateStore

    store = StateStore.open_existing(directory)
    if store is None:
        return {}
    try:
        records = store.jobs([job.name for job in jobs])
    finally:
        store.close()
    return {name: (record.current.provenance or {}).get("script_sha256") or ""
            for name, record in records.items() if record.current is not None and record.current.scheduler_id}


def _section(title: str, names: list[str]) -> None:
    print(f"{title}: {len(names)}")
    for name in names[:SHOWN]:
        print(f"  {name}")
    if len(names) > SHOWN:
        print(f"  ... and {len(names) - SHOWN} more")


def print_diff(args: argparse.Namespace, jobs: list[Job]) -> int:
    from orchestrator.render import render_job
    from orchestrator.state.builds import read_manifest

    from orchestrator.cli.common import campaign_state_dir

    directory = campaign_state_dir(args.config, jobs)
    manifest = read_manifest(directory)
    if manifest is None:
        raise UserError(f"{args.config} was not built here yet (no build.json in {directory}): `orch build` records "
                        "what --diff compares with")
    running = _running_scripts(jobs, directory)
    new, changed, changed_running = [], [], []
    rendered: dict[str, str] = {}
    for job in jobs:
        text = render_job(job)
        rendered[job.name] = text
        digest = content_digest(text.encode("utf-8"))
        built = manifest.get(job.name)
        if built is None:
            new.append(job.name)
        elif built != digest:
            changed.append(job.name)
        submitted = running.get(job.name)
        if submitted and submitted != digest:
            changed_running.append(job.name)
    names = {job.name for job in jobs}
    removed = [] if args.filters else sorted(name for name in manifest if name not in names)
    if args.show:
        job = next((job for job in jobs if job.name == args.show), None)
        if job is None:
            raise UserError(f"no job named {args.show!r} (see `orch plan {args.config}` for the names)")
        built = manifest.get(job.name)
        old = _old_script(job, built, directory) if built else ""
        if old is None:
            raise UserError(f"{job.name}: the script built last ({built[:12]}) is no longer on disk or kept under .orch/")
        sys.stdout.writelines(difflib.unified_diff(old.splitlines(keepends=True),
                                                   rendered[job.name].splitlines(keepends=True),
                                                   f"{job.sbatch_script} (built)", f"{job.sbatch_script} (now)"))
        return 0
    _section("new jobs", new)
    _section("removed jobs" + (" (not compared: filters given)" if args.filters else ""), removed)
    _section("changed scripts", changed)
    _section("running with an older script (left to finish; not resubmitted for it)", changed_running)
    print(f"{len(jobs) - len(new) - len(changed)} of {len(jobs)} jobs unchanged")
    return 0
