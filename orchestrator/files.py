"""Files written whole: a temporary file beside the target, then a rename, so a reader (another host on a shared
file system included) sees the old content or the new, never half of it."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomically(path: str | os.PathLike[str], text: str, executable: bool = False) -> None:
    """Write `text` to `path` via a temporary file and a rename, so a failure never leaves half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            # On disk before the rename makes it the file: a crash of the host after the rename must not leave the
            # new name on an empty or partial file (ext4/XFS delayed allocation; a client cache on NFS/Lustre).
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o755 if executable else 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _sync_directory(target.parent)


def _sync_directory(folder: Path) -> None:
    """Make the rename itself durable; a file system that cannot sync a directory (some network ones) is left be."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def read_json(path: str | os.PathLike[str]) -> Any | None:
    """The JSON document at `path`; None when it is missing, unreadable or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def update_json(path: str | os.PathLike[str], change: Callable[[Any | None], Any]) -> Any:
    """Read-modify-write a small JSON document: `change` gets what is there (None if nothing) and returns the new
    document, written whole under a lock file beside it (`.NAME.lock`), so two processes, or two hosts on a shared file
    system, updating at once lose neither's change. Returns the new document."""
    from filelock import FileLock

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.with_name(f".{target.name}.lock"))):
        document = change(read_json(target))
        write_atomically(target, json.dumps(document, indent=1) + "\n")
        return document
