"""Campaign planning: the arithmetic a user does before writing a config.

- `cooldown_cmds`: Megatron-DeepSpeed commands that cool a constant-LR run down from a checkpoint.
- `milestones`: token milestones -> checkpoint steps (exact and rolled back by the cooldown length).
- `cooldown_sweep`: one runnable script per milestone, built from the two above.
- `data_mix`: blend weighted data-file lists into one list (continued pre-training mixtures).
- `flops`: parameter counts, training FLOPs per token, tokens per step, iterations for a budget.

Pure Python with no heavy imports: the CLI imports these modules on every `orch` call.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: str | os.PathLike[str], text: str, executable: bool = False) -> None:
    """Write `text` to `path` via a temporary file and a rename, so a failure never leaves half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, 0o755 if executable else 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
