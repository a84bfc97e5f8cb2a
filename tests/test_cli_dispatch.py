"""`orch COMMAND` imports only COMMAND's module: the helpers run `orch ckpt pending` in every probe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


_RUN_AND_LIST = """
import sys
from orchestrator.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print("MODULES", " ".join(sorted(sys.modules)), file=sys.stderr)
sys.exit(code)
"""


def imported_modules(*args: str, cwd: Path) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The modules loaded by `orch ARGS` (as sys.modules lists them when it is done)."""
    result = subprocess.run([sys.executable, "-c", _RUN_AND_LIST, *args], cwd=cwd, capture_output=True, text=True,
                            timeout=60)
    listed = [line for line in result.stderr.splitlines() if line.startswith("MODULES ")]
    return set(listed[-1].split()[1:]) if listed else set(), result


def test_a_command_imports_only_its_own_module(tmp_path: Path) -> None:
    modules, result = imported_modules("ckpt", "pending", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "0", result.stderr[-500:]
    commands = {name for name in modules if name.startswith("orchestrator.cli.")}
    assert commands == {"orchestrator.cli.ckpt"}
    assert not any(name.startswith(("orchestrator.config", "orchestrator.planning", "numpy", "jinja2", "rich"))
                   for name in modules)


def test_other_spellings_still_find_every_command(tmp_path: Path) -> None:
    modules, result = imported_modules("build-and-run", "--help", cwd=tmp_path)  # registered by cli/run.py
    assert result.returncode == 0 and "--max-jobs" in result.stdout
    unknown = subprocess.run([sys.executable, "-m", "orchestrator", "nosuch"], capture_output=True, text=True,
                             timeout=60)
    assert unknown.returncode == 2 and "'ckpt'" in unknown.stderr and "'report'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
