"""`-f KEY=VALUE` fixes and `KEY=V1,V2` filters, as AutoExperiment's build/run apply them."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import load_jobs
from orchestrator.errors import UserError

CONFIG = """
template: t.sbatch
name: "{size}_lr{lr}_{MODE}"
sbatch_script: "s/{name}.sbatch"
output_file: "logs/{name}.out"
cmd: "sbatch {sbatch_script}"
size:
  - 10M: {layers: 2, lr: [0.01, 0.001]}
  - 25M: {layers: 4, lr: [0.1, 0.2]}
MODE: [train, eval]
"""


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    return path


def test_filters_compare_text_values(config: Path) -> None:
    jobs = load_jobs(config, filters=["MODE=train", "size=25M"])
    assert [j.name for j in jobs] == ["25M_lr0.1_train", "25M_lr0.2_train"]
    assert len(load_jobs(config, filters=["lr=0.01,0.2"])) == 2 * 2  # str(0.01) and str(0.2)


def test_fix_collapses_a_sweep_everywhere_and_keeps_the_text(config: Path) -> None:
    jobs = load_jobs(config, fixes=["lr=1e-3"])
    assert {j.params["lr"] for j in jobs} == {"1e-3"}  # AutoExperiment's cfg[key] = "1e-3"
    assert len(jobs) == 2 * 2
    assert {j.params["seed"] for j in load_jobs(config, fixes=["seed=010"])} == {"010"}


def test_typed_fix_reads_the_value_as_yaml(config: Path) -> None:
    jobs = load_jobs(config, typed_fixes=["lr=1e-3"])
    assert {j.params["lr"] for j in jobs} == {0.001}
    assert {j.params["seed"] for j in load_jobs(config, typed_fixes=["seed=yes"])} == {True}


def test_fix_of_unknown_key_adds_it(config: Path) -> None:
    jobs = load_jobs(config, fixes=["extra=hello"])
    assert all(j.params["extra"] == "hello" for j in jobs)


def test_unknown_filter_key_is_an_error(config: Path) -> None:
    with pytest.raises(UserError, match="filter key 'mode'"):
        load_jobs(config, filters=["mode=train"])
