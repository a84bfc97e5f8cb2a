"""Writing scripts: one listing per folder decides what exists, a changed script is replaced whole, and two
jobs whose script paths are spelt differently but name one file are caught before anything is written."""

from __future__ import annotations

import os

from orchestrator.jobs import Job
from orchestrator.render.write import build_scripts, script_path_clashes


def job(name: str, script: str) -> Job:
    return Job(name=name, template="t.sbatch", sbatch_script=script, output_file=f"logs/{name}.out", cmd="sbatch")


def test_new_changed_and_unchanged_scripts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "same.sbatch").write_text("#!/bin/bash\necho same\n")
    (tmp_path / "scripts" / "old.sbatch").write_text("#!/bin/bash\necho old\n")
    jobs = [job("same", "scripts/same.sbatch"), job("old", "scripts/old.sbatch"), job("new", "scripts/new.sbatch"),
            job("deep", "more/scripts/deep.sbatch"), job("here", "here.sbatch")]
    texts = ["#!/bin/bash\necho same\n", "#!/bin/bash\necho changed\n", "#!/bin/bash\necho new\n", "deep\n", "here\n"]
    same_inode = os.stat("scripts/same.sbatch").st_ino
    result = build_scripts(jobs, list(zip(jobs, texts)))
    assert (result.written, result.unchanged) == (4, 1)
    for one, text in zip(jobs, texts):
        assert (tmp_path / one.sbatch_script).read_text() == text
    assert os.stat("scripts/same.sbatch").st_ino == same_inode  # an unchanged script is not touched
    assert (tmp_path / "logs").is_dir() and (tmp_path / "more" / "scripts").is_dir()
    assert not [p for p in (tmp_path / "scripts").iterdir() if "orch-tmp" in p.name]
    again = build_scripts(jobs, list(zip(jobs, texts)))
    assert (again.written, again.unchanged) == (0, 5)


def test_one_file_spelt_two_ways_is_a_clash():
    assert script_path_clashes([job("a", "s/x.sbatch"), job("b", "s//x.sbatch")]) == ["s//x.sbatch (a, b)"]
    assert script_path_clashes([job("a", "./x.sbatch"), job("b", "x.sbatch")]) == ["x.sbatch (a, b)"]
    assert script_path_clashes([job("a", "s/./x.sbatch"), job("b", "s/x.sbatch")]) == ["s/x.sbatch (a, b)"]
    assert script_path_clashes([job("a", "s/x.sbatch"), job("b", "t/x.sbatch"), job("c", "s/y.sbatch")]) == []
