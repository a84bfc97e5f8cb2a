"""`orch build` writes byte for byte what AutoExperiment itself writes.

Each directory under tests/fixtures/autoexperiment/ is a case: config.yaml, its templates, optional
args.txt (build arguments, one per line) and expected/, the files AutoExperiment's `build` wrote
(recorded by scripts/record-autoexperiment-goldens.sh from SLAMPAI/autoexperiment with OmegaConf 2.3).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from orchestrator.cli import main

CASES = Path(__file__).parent / "fixtures" / "autoexperiment"
CASE_NAMES = sorted(path.name for path in CASES.iterdir() if (path / "expected").is_dir())


def _files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_every_construct_has_a_case() -> None:
    assert set(CASE_NAMES) >= {
        "interpolation", "literal_braces", "merge_keys", "expressions", "numbers", "fixes_as_text",
        "fix_before_interpolation", "grid",
    }


@pytest.mark.parametrize("case", CASE_NAMES)
def test_build_matches_autoexperiment(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = CASES / case
    for path in source.iterdir():
        if path.is_file():
            shutil.copy(path, tmp_path)
    args_file = source / "args.txt"
    args = args_file.read_text().split("\n") if args_file.exists() else []
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORCH_GOLDEN_UNSET", raising=False)
    inputs = set(_files(tmp_path))

    assert main(["build", "config.yaml", *[arg for arg in args if arg]]) == 0

    written = {name: content for name, content in _files(tmp_path).items() if name not in inputs}
    written = {name: content for name, content in written.items() if not name.startswith(".orch/")}
    expected = _files(source / "expected")
    assert sorted(written) == sorted(expected)
    for name, content in expected.items():
        assert written[name] == content, f"{case}: {name} differs from AutoExperiment's"
