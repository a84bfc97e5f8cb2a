"""Errors a new user meets first: each one line (or two), naming the file, line, key or flag, with the nearest
right spelling; filters match numbers by value and say when they match nothing; a campaign found from anywhere."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CONFIG = """\
template: {template}
name: "j_{{lr}}"
sbatch_script: "scripts/{{name}}.sbatch"
output_file: "logs/{{name}}.out"
cmd: "sbatch {{sbatch_script}}"
lr: [1e-3, 3e-3]
hidden: 4
"""


def orch(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=root, capture_output=True, text=True,
                          timeout=120)


def campaign(root: Path, body: str, template: str = "t.sbatch") -> Path:
    (root / template).write_text("#!/bin/bash\n#SBATCH --job-name={name}\n" + textwrap.dedent(body)
                                 if not template.endswith(".j2") else "#!/bin/bash\n" + textwrap.dedent(body))
    (root / "c.yaml").write_text(CONFIG.format(template=template))
    return root


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 2, result.stdout + result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("orch") and "warning" not in line]


def test_an_undefined_format_variable_names_its_line_and_the_nearest_variable(tmp_path):
    campaign(tmp_path, "echo {hidden}\necho {hiden}\n")
    [line] = error_lines(orch(tmp_path, "build", "c.yaml"))
    assert "t.sbatch:4: undefined variable {hiden}" in line and "did you mean {hidden}?" in line


def test_an_undefined_jinja_variable_names_its_line_and_the_nearest_variable(tmp_path):
    campaign(tmp_path, "echo {{ hidden }}\necho {{ Hidden }}\n", template="t.sbatch.j2")
    [line] = error_lines(orch(tmp_path, "build", "c.yaml"))
    assert "t.sbatch.j2:3: undefined variable 'Hidden'" in line and "did you mean hidden?" in line


def test_a_number_format_on_a_value_fixed_as_text_suggests_the_typed_fix(tmp_path):
    campaign(tmp_path, "echo {lr:.1e}\n")
    assert orch(tmp_path, "build", "c.yaml").returncode == 0  # the config's 1e-3 is a number
    [line] = error_lines(orch(tmp_path, "build", "c.yaml", "-f", "lr=1e-3"))
    assert "{lr:.1e} at line 3 formats a number but lr is the text '1e-3'" in line and "-F lr=1e-3" in line
    assert "literal braces" not in line


@pytest.mark.parametrize("words, expected", [
    (["stauts", "c.yaml"], "unknown command 'stauts' (did you mean status"),
    (["ckpt", "pendng"], "unknown command 'pendng' (did you mean pending?)"),
    (["plan", "c.yaml", "--shwo", "x"], "unrecognized arguments: --shwo (did you mean --show"),
    (["run", "c.yaml", "--scheduler", "slurn"], "(did you mean slurm?)"),
])
def test_unknown_commands_and_flags_get_the_nearest_spelling(tmp_path, words, expected):
    campaign(tmp_path, "echo {hidden}\n")
    result = orch(tmp_path, *words)
    assert result.returncode == 2 and expected in result.stderr, result.stderr


def test_filters_match_numbers_by_value_and_say_when_they_match_nothing(tmp_path):
    campaign(tmp_path, "echo {hidden}\n")
    spelled_as_in_config = orch(tmp_path, "plan", "c.yaml", "lr=1e-3", "--json")
    assert spelled_as_in_config.returncode == 0 and spelled_as_in_config.stdout.count('"name": "j_0.001"') == 1
    assert orch(tmp_path, "plan", "c.yaml", "lr=0.001", "--json").stdout.count('"name"') == 1  # AutoExperiment's
    [line] = error_lines(orch(tmp_path, "plan", "c.yaml", "lr=1e-4"))
    assert "lr=1e-4 matches no job (lr is 0.001, 0.003)" in line
    [line] = error_lines(orch(tmp_path, "plan", "c.yaml", "lr=1e-3", "hidden=5"))
    assert "hidden=5 matches no job (hidden is 4)" in line


def test_a_campaign_is_found_from_another_folder(tmp_path):
    project = tmp_path / "project"
    (project / "configs").mkdir(parents=True)
    campaign(project, "echo {hidden}\n")
    (project / "c.yaml").rename(project / "configs" / "c.yaml")
    assert orch(project, "build", "configs/c.yaml").returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    status = orch(elsewhere, "status", str(project / "configs" / "c.yaml"), "--json")
    assert status.returncode == 0, status.stderr
    assert f"working in {project}" in status.stderr and '"j_0.001"' in status.stdout
    assert not (elsewhere / ".orch").exists()
