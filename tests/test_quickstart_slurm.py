"""The quickstart campaign `make demo` runs locally (configs/quickstart.yaml), on the real Slurm test cluster.

The config, templates and tinylm example are used as shipped; only EXP is fixed from the command line to
give every job name this test's unique prefix, so other tests on the shared cluster never see its jobs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from monitor_campaign import link_project_files, run_orch
from orchestrator.campaign.results import collect_results
from orchestrator.config import load_jobs

CONFIG = "configs/quickstart.yaml"
REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_quickstart_campaign_on_slurm(slurm_cluster, slurm_job_prefix, tmp_path, monkeypatch):
    link_project_files(tmp_path, CONFIG, "templates/quickstart", "examples/tinylm")
    fix_exp = ("-f", f"EXP={slurm_job_prefix}h{{HIDDEN}}_lr{{LR}}")
    result = run_orch(tmp_path, "build-and-run", CONFIG, *fix_exp, "--scheduler", "slurm", "--max-jobs", "4",
                      "--poll-secs", "2", timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    listed = run_orch(tmp_path, "status", CONFIG, *fix_exp, "--json", timeout=60)
    rows = json.loads(listed.stdout)["jobs"]
    assert len(rows) == 96 and {row["state"] for row in rows} == {"done"}
    assert all(row["name"].startswith(slurm_job_prefix) for row in rows)
    assert all(row["scheduler_id"] for row in rows)  # each ran as a Slurm job, not locally

    monkeypatch.chdir(tmp_path)
    jobs = load_jobs(CONFIG, fixes=[fix_exp[1]])
    table = collect_results(jobs)
    loss = {(row["EXP"], row["PHASE_TAG"], row["iteration"]): row["eval/val_loss"] for row in table.rows
            if row.get("eval/val_loss") is not None}
    experiments = {exp for exp, _, _ in loss}
    assert len(experiments) == 8
    for exp in experiments:
        pretrain = {it for e, tag, it in loss if (e, tag) == (exp, "pretrain")}
        assert pretrain == set(range(100, 1601, 100)), exp  # every pretrain checkpoint converted and evaluated
        for scale in (100, 200, 400, 800, 1600):
            branch = [(it, value) for (e, tag, it), value in loss.items() if (e, tag) == (exp, f"cd{scale}")]
            final_iteration, final_loss = max(branch)
            assert final_iteration == scale + scale // 4, (exp, scale)
            # the cooldown reaches a lower validation loss than the checkpoint it branched off
            assert final_loss < loss[(exp, "pretrain", scale)], (exp, scale, branch)

    # The law the campaign exists to measure: one point per annealed run end (4 widths x 5 cooldown ends; the
    # pretrain ends, at constant LR, are left out), best learning rate.
    entropy = _entropy(tmp_path)
    fitted = run_orch(tmp_path, "fit", CONFIG, *fix_exp, "--json", "--bootstrap", "500", "--budget", "1e11",
                      "--budget", "1e12", timeout=300)
    assert fitted.returncode == 0, fitted.stderr
    payload = json.loads(fitted.stdout)
    assert payload["n_points"] == 20 and payload["E"] > 0
    # The law recovers the truth: E's 95% interval holds the grammar's entropy, and no compute-optimal row of the
    # budgets `make demo` asks for (the campaign's own range) predicts a loss below it.
    low, high = payload["ci"]["E"]
    assert low <= entropy <= high, (low, high, entropy)
    assert all(row["loss"] > entropy for row in payload["optimal"]), payload["optimal"]
    # The figures README.md and docs/analysis.md quote are this run's (tinylm is seeded: Slurm or local, the same
    # losses; BLAS may round differently, hence the tolerance).
    documented = documented_fit()
    assert f"to the {payload['n_points']} annealed run ends" in (REPO / "README.md").read_text().replace("\n", " ")
    for name, value in documented.items():
        # A and B are the law's least determined constants (their intervals span one and three decades here): a
        # scipy release moved B by 0.5 % on the same points, so they are held to 1 %, the rest to 0.2 %.
        tolerance = 1e-2 if name in ("A", "B") else 2e-3
        assert payload[name] == pytest.approx(value, rel=tolerance), (name, payload[name], value)


def _entropy(cwd: Path) -> float:
    """The grammar's true entropy rate, as tinylm computes it (`grammar.py --entropy`)."""
    printed = subprocess.run([sys.executable, "examples/tinylm/grammar.py", "--entropy"], cwd=cwd, capture_output=True,
                             text=True, timeout=60, check=True)
    return float(printed.stdout)


def documented_fit() -> dict[str, float]:
    """The law's parameters as docs/analysis.md's "The quickstart's own fit" prints them."""
    section = (REPO / "docs" / "analysis.md").read_text().split("### The quickstart's own fit")[1]
    block = section.split("```")[1]
    values = dict(re.findall(r"^\s+(E|A|B|alpha|beta)\s+([0-9.e+-]+)", block, re.MULTILINE))
    assert set(values) == {"E", "A", "B", "alpha", "beta"}, block
    return {name: float(value) for name, value in values.items()}
