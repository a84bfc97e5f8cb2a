"""`orch for-each` and `orch run --filter-cmd`: a shell command formatted with each job's values."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main

CONFIG = """
template: t.sbatch
name: "j{lr}"
sbatch_script: "s/{name}.sbatch"
output_file: "l/{name}.out"
cmd: "sbatch {sbatch_script}"
lr: [1, 2, 3]
"""


@pytest.fixture()
def campaign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "c.yaml").write_text(CONFIG)
    (tmp_path / "t.sbatch").write_text("#SBATCH --job-name={name}\necho {lr}\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_for_each_runs_in_job_order_and_reports_failures(campaign: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["for-each", "c.yaml", "echo {name} >> order.txt; echo out-{lr}; test {lr} != 2"])
    out, err = capsys.readouterr()
    assert code == 1 and "1 command(s) failed" in err
    assert (campaign / "order.txt").read_text().split() == ["j1", "j2", "j3"]
    assert out.splitlines() == ["== j1 ==", "out-1", "== j2 (exit 1) ==", "out-2", "== j3 ==", "out-3"]


def test_for_each_takes_filters_and_fixes(campaign: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["for-each", "c.yaml", "echo {lr}", "lr=1,3"]) == 0
    assert capsys.readouterr().out.split() == ["==", "j1", "==", "1", "==", "j3", "==", "3"]
    assert main(["for-each", "c.yaml", "echo {lr}", "-f", "lr=1e-3"]) == 0
    assert "1e-3" in capsys.readouterr().out


def test_for_each_with_an_unknown_variable_runs_nothing(campaign: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["for-each", "c.yaml", "touch ran-{lr}; echo {nope}"]) == 2
    assert "job j1: the command names {nope}" in capsys.readouterr().err
    assert not list(campaign.glob("ran-*"))


def test_for_each_timeout(campaign: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["for-each", "c.yaml", "sleep 5", "lr=1", "--timeout", "0.2"]) == 1
    assert "== j1 (killed after 0.2 s) ==" in capsys.readouterr().out


def test_run_filter_cmd_keeps_the_jobs_whose_command_exits_0(campaign: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "c.yaml"]) == 0
    (campaign / "ready-2").touch()
    code = main(["run", "c.yaml", "--dry", "--scheduler", "local", "--filter-cmd", "test -e ready-{lr}"])
    out = capsys.readouterr().out
    assert code == 0
    assert "j2: would submit" in out and "j1:" not in out and "j3:" not in out


def test_run_filter_cmd_matching_nothing_is_an_error(campaign: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "c.yaml", "--dry", "--scheduler", "local", "--filter-cmd", "false"]) == 2
    assert "no job matches the filters --filter-cmd 'false'" in capsys.readouterr().err
