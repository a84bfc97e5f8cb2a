"""The data flows one way (config -> jobs -> render -> monitor -> ...): the lowest layers import nothing above them."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "orchestrator"
# What each low layer may import from orch (itself included).
ALLOWED = {
    "formulas": {"formulas"},
    "config": {"config", "errors", "jobs", "formulas"},
}


def orch_imports(path: Path) -> set[str]:
    """The orch packages a module imports, at its top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
            [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "orchestrator":
                found.add(parts[1] if len(parts) > 1 else "")
    return found


def test_config_and_formulas_import_no_higher_layer():
    crossings = {f"{path.relative_to(PACKAGE)} imports orchestrator.{package}"
                 for layer, allowed in ALLOWED.items() for path in (PACKAGE / layer).glob("*.py")
                 for package in orch_imports(path) - allowed}
    assert not crossings, sorted(crossings)


def test_the_rule_sees_an_import_inside_a_function(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from orchestrator.planning.cooldown_cmds import cooldown_frac\n")
    assert orch_imports(module) == {"planning"}
