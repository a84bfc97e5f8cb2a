"""What each submission ran with: the config (path, hash), the `-f`/`-F` fixes and filters, orch's version,
the git commit and dirty state of the config's repository, and the rendered script (hash, plus a copy
under `.orch/scripts/`, named by its hash, so `orch status --history` and `orch plan --diff` can show it).

The campaign's part is gathered once by the CLI when the monitor starts (it runs git); the monitor
adds each submission's script and commits it with the intent to submit, before the submit command.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orchestrator import __version__
from orchestrator.process import CommandTimeout, run_command
from orchestrator.render.write import content_digest

SCRIPTS_DIR = "scripts"  # under the state directory (.orch/)
GIT_TIMEOUT_SECS = 10.0


@dataclass(frozen=True)
class CampaignProvenance:
    config_path: str
    config_sha256: str
    fixes: list[str] = field(default_factory=list)
    typed_fixes: list[str] = field(default_factory=list)
    filters: list[str] = field(default_factory=list)
    filter_cmd: str | None = None
    orch_version: str = __version__
    git_commit: str | None = None
    git_dirty: bool | None = None

    def for_submission(self, script_sha256: str | None) -> dict[str, Any]:
        return {**asdict(self), "script_sha256": script_sha256}


def _git(directory: Path, *args: str) -> str | None:
    try:
        result = run_command(["git", "-C", str(directory), *args], GIT_TIMEOUT_SECS)
    except (OSError, CommandTimeout):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def campaign_provenance(config_path: str, fixes: list[str], typed_fixes: list[str], filters: list[str],
                        filter_cmd: str | None = None) -> CampaignProvenance:
    path = Path(config_path).resolve()
    commit = _git(path.parent, "rev-parse", "HEAD")
    status = _git(path.parent, "status", "--porcelain", "--untracked-files=no") if commit else None
    return CampaignProvenance(
        config_path=str(path), config_sha256=content_digest(path.read_bytes()), fixes=list(fixes),
        typed_fixes=list(typed_fixes), filters=list(filters), filter_cmd=filter_cmd,
        git_commit=commit, git_dirty=bool(status) if status is not None else None,
    )


def keep_script(state_dir: Path, content: bytes) -> str:
    """Store a script by its hash (once; atomically) and return the hash."""
    digest = content_digest(content)
    target = state_dir / SCRIPTS_DIR / f"{digest}.sbatch"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{digest}.{os.getpid()}.tmp")
        temporary.write_bytes(content)
        os.replace(temporary, target)
    return digest


def kept_script(state_dir: Path, digest: str) -> str | None:
    try:
        return (state_dir / SCRIPTS_DIR / f"{digest}.sbatch").read_text(errors="replace")
    except OSError:
        return None
