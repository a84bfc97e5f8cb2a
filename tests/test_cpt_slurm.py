"""The tinylm continual pre-training campaign (configs/cpt_quickstart.yaml) on the real Slurm test cluster.

Config, templates, datasets and tinylm are used as shipped; only `name` is fixed from the command line to give
every job this test's unique prefix. Checked: every stage starts from the right checkpoint, every checkpoint is
evaluated on every dataset, every blended data list holds the recipe's weights, and replay forgets less.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from monitor_campaign import link_project_files, run_orch
from orchestrator.campaign.results import collect_results
from orchestrator.config import load_jobs
from orchestrator.render.generated import template_variables

CONFIG = "configs/cpt_quickstart.yaml"
# The recipe, written out independently of the config: (D0, new data, buffer) per mix, stage 1 without a buffer.
RECIPE = {"naive": (0.0, 1.0, 0.0), "replay5": (0.05, 0.95, 0.0), "mixA": (0.33, 0.33, 0.34), "mixB": (0.05, 0.48, 0.47)}
STAGE1 = {"naive": (0.0, 1.0), "replay5": (0.05, 0.95), "mixA": (0.33, 0.67), "mixB": (0.05, 0.95)}

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def expected_weights(mix: str, stage: int) -> dict[str, float]:
    if stage == 0:
        return {"d0": 1.0}
    if stage == 1:
        old, new = STAGE1[mix]
        return {key: value for key, value in (("d0", old), ("d1", new)) if value}
    old, new, buffer = RECIPE[mix]
    weights = {"d0": old, f"d{stage}": new} | {f"d{k}": buffer / (stage - 1) for k in range(1, stage)}
    return {key: value for key, value in weights.items() if value}


def test_cpt_campaign_on_slurm(slurm_cluster, slurm_job_prefix, tmp_path, monkeypatch):
    link_project_files(tmp_path, CONFIG, "templates/quickstart", "examples/tinylm")
    fix = ("-f", f"name={slurm_job_prefix}{{RUN}}_{{MODE}}")
    result = run_orch(tmp_path, "build-and-run", CONFIG, *fix, "--scheduler", "slurm", "--max-jobs", "6",
                      "--poll-secs", "2", timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads(run_orch(tmp_path, "status", CONFIG, *fix, "--json", timeout=60).stdout)["jobs"]
    assert len(rows) == 26 and {row["state"] for row in rows} == {"done"}
    assert all(row["name"].startswith(slurm_job_prefix) and row["scheduler_id"] for row in rows)

    monkeypatch.chdir(tmp_path)
    jobs = load_jobs(CONFIG, fixes=[fix[1]])
    trains = [job for job in jobs if job.params["MODE"] == "train"]
    # Every stage starts from the previous stage's (or the pretrain's) checkpoint at the end of that stage.
    for job in trains:
        stage, run_dir = int(job.params["STAGE"]), Path(job.params["RUN_DIR"])
        if stage == 0:
            continue
        init = int(job.params["INIT_ITER"])
        previous = Path(job.params["INIT_FROM"])
        assert previous.name == ("pretrain" if stage == 1 else f"s{stage - 1}")
        linked = run_dir / "checkpoints" / f"iter_{init:07d}"
        assert linked.is_symlink() and linked.resolve() == (previous / "checkpoints" / f"iter_{init:07d}").resolve()
        log = (run_dir / "slurm_train.out").read_text()
        assert f"loading checkpoint from {run_dir}/checkpoints at iteration {init}" in log

        # The blended list the job trained on holds the recipe's weights (per corpus, to the six decimals written).
        mix_file = Path(template_variables(job)["DATA_MIX_FILE"])
        weights: dict[str, float] = defaultdict(float)
        for line in mix_file.read_text().splitlines():
            weight, _prefix, corpus = line.split()
            weights[corpus] += float(weight)
        assert dict(weights) == pytest.approx(expected_weights(job.params["MIX"], stage), abs=1e-6), job.name

    # Every checkpoint of every run evaluated on every dataset, the stage's own data named as loss_new.
    table = collect_results(jobs)
    by_run: dict[str, dict[int, dict]] = defaultdict(dict)
    for row in table.rows:
        by_run[row["RUN"]][row["iteration"]] = row
    assert len(by_run) == 13
    for job in trains:
        stage, run = int(job.params["STAGE"]), job.params["RUN"]
        expected = [100, 200, 300, 400] if stage == 0 else [int(job.params["INIT_ITER"]) + 100, int(job.params["INIT_ITER"]) + 200]
        evaluated = sorted(it for it, row in by_run[run].items() if row.get("eval/loss_d0") is not None)
        assert evaluated == expected, run
        for iteration in expected:
            row = by_run[run][iteration]
            assert all(row[f"eval/loss_d{k}"] > row[f"eval/true_entropy_d{k}"] for k in range(4))
            assert row["eval/loss_new"] == row[f"eval/loss_d{stage}"]

    # Forgetting: after stage 3, every strategy that replays D0 has a lower D0 loss than naive CPT; naive learns
    # the newest data best.
    end = {mix: by_run[f"{mix}_s3"][1000] for mix in RECIPE}
    assert all(end[mix]["eval/loss_d0"] < end["naive"]["eval/loss_d0"] for mix in ("replay5", "mixA", "mixB"))
    assert end["naive"]["eval/loss_new"] <= min(end[mix]["eval/loss_new"] for mix in ("mixA", "mixB"))
