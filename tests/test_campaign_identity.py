"""A campaign is its config, not its folder: two configs side by side keep their own state, lock and jobs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from monitor_campaign import campaign_state, run_orch, start_orch, wait_for
from orchestrator.job_state import JobState
from orchestrator.state import StateStore
from orchestrator.state.campaign import campaign_dir, campaign_id

pytestmark = pytest.mark.slow


def write_config(root: Path, config: str, scripts: str, seconds: float) -> None:
    """Job names `j0`, `j1` in both configs; only their scripts' folder and their run time differ."""
    (root / "job.sbatch").write_text("#!/bin/bash\nsleep {seconds}\necho 'TRAINING DONE'\n")
    (root / config).write_text(textwrap.dedent(f"""\
        template: job.sbatch
        name: "j{{idx}}"
        sbatch_script: "{scripts}/{{name}}.sbatch"
        output_file: "{scripts}/{{name}}.out"
        cmd: "sbatch {{sbatch_script}}"
        termination_str: "TRAINING DONE"
        check_interval_secs: 1
        seconds: {seconds}
        idx: [0, 1]
        """))


def states(root: Path, config: str) -> dict[str, str]:
    result = run_orch(root, "status", config, "--json")
    assert result.returncode == 0, result.stderr
    return {row["name"]: row["state"] for row in json.loads(result.stdout)["jobs"]}


def test_campaign_ids_differ_per_config_and_read_well(tmp_path: Path) -> None:
    assert campaign_id(tmp_path / "a.yaml", tmp_path) != campaign_id(tmp_path / "sub" / "a.yaml", tmp_path)
    assert campaign_id(tmp_path / "a.yaml", tmp_path).startswith("a-")
    # The same config spelled two ways is the same campaign.
    assert campaign_id(tmp_path / "a.yaml", tmp_path) == campaign_id(f"{tmp_path}/sub/../a.yaml", tmp_path)
    assert campaign_dir(tmp_path / "a.yaml", tmp_path).parent == tmp_path / ".orch" / "campaigns"


def test_two_configs_in_one_folder_run_side_by_side(tmp_path: Path) -> None:
    write_config(tmp_path, "slow.yaml", "slow", 20)
    write_config(tmp_path, "fast.yaml", "fast", 0.2)
    for config in ("slow.yaml", "fast.yaml"):
        assert run_orch(tmp_path, "build", config).returncode == 0
    slow = start_orch(tmp_path, "run", "slow.yaml", "--scheduler", "local", "--poll-secs", "0.3")
    try:
        wait_for(lambda: set(states(tmp_path, "slow.yaml").values()) == {"running"}, 30, what="slow jobs running")
        # Not refused by the other campaign's monitor, and never adopting its jobs of the same names.
        fast = run_orch(tmp_path, "run", "fast.yaml", "--scheduler", "local", "--poll-secs", "0.3")
        assert fast.returncode == 0, fast.stdout + fast.stderr
        assert "2 jobs: 2 done" in fast.stdout and "adopted" not in fast.stdout
        assert states(tmp_path, "fast.yaml") == {"j0": "done", "j1": "done"}
        assert set(states(tmp_path, "slow.yaml").values()) == {"running"}
        # A second monitor of the same config is still refused.
        again = run_orch(tmp_path, "run", "slow.yaml", "--scheduler", "local")
        assert again.returncode == 2 and "already monitoring" in again.stderr
    finally:
        slow.terminate()
        slow.wait(30)
    assert campaign_state(tmp_path, "slow.yaml") != campaign_state(tmp_path, "fast.yaml")
    assert (campaign_state(tmp_path, "fast.yaml") / "monitor.log").exists()


def test_a_folder_wide_store_of_an_older_orch_moves_to_the_config_whose_jobs_it_holds(tmp_path: Path) -> None:
    write_config(tmp_path, "a.yaml", "a", 0.1)
    (tmp_path / "b.yaml").write_text((tmp_path / "a.yaml").read_text().replace('"j{idx}"', '"other{idx}"'))
    legacy = StateStore(_legacy_path(tmp_path))
    legacy.ensure_jobs(["j0", "j1"])
    legacy.set_state("j0", JobState.DONE, "finished")
    legacy.close()
    (tmp_path / ".orch" / "build.json").write_text('{"scripts": {}}')
    assert states(tmp_path, "b.yaml") == {"other0": "waiting", "other1": "waiting"}  # not b's store: left alone
    assert _legacy_path(tmp_path).exists()
    result = run_orch(tmp_path, "status", "a.yaml", "--json")
    assert "moved this folder's .orch/state.db" in result.stderr
    assert {row["name"]: row["state"] for row in json.loads(result.stdout)["jobs"]} == {"j0": "done", "j1": "waiting"}
    assert not _legacy_path(tmp_path).exists()
    assert (campaign_state(tmp_path, "a.yaml") / "build.json").exists()


def _legacy_path(root: Path) -> Path:
    (root / ".orch").mkdir(exist_ok=True)
    return root / ".orch" / "state.db"
