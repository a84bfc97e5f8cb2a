"""The convert+eval loops of the shipped templates never skip a run's final save.

A loop that asks "is there a save to claim?" and then "has training finished?" loses the final save when it
becomes whole between the two questions: the claim found nothing, the finish check then sees the final save, and
the job ends "all converted" with the final save never converted (nothing resubmits a job that printed its
termination string). The loops ask whether training has finished before they claim. Each rendered script runs for
real with bash; `orch` and the converters are stand-ins at the subprocess edge: on the first claim the stand-in
finishes the training run (the final save and its tracker appear) and says there is nothing to claim yet.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from orchestrator.config import load_jobs
from orchestrator.render import render_job

REPO = Path(__file__).resolve().parents[1]

STAND_IN = """#!/bin/bash
# orch, as the converter loop calls it; every call logged
echo "$*" >> "$CALLS"
case "$1 $2" in
  "ckpt claim")
    claims=$(grep -c '^ckpt claim' "$CALLS")
    if [ "$claims" = 1 ]; then   # training finishes right after this claim looked
        mkdir -p "$FINAL_DIR"
        echo "$FINAL_TEXT" > "$TRACKER"
        exit 1
    fi
    [ "$claims" = 2 ] && { echo "$FINAL"; exit 0; }
    exit 1 ;;
  "ckpt latest") [ -f "$TRACKER" ] && echo "$FINAL" || echo "" ;;
esac
exit 0
"""


def _job(config: str, name: str, **fixes: str):
    jobs = load_jobs(REPO / config, fixes=[f"{key}={value}" for key, value in fixes.items()])
    return next(job for job in jobs if job.name == name)


@pytest.mark.parametrize("config, name, tracker, text", [
    ("configs/quickstart.yaml", "h32_lr0.01_pretrain_convert_eval", "latest_checkpointed_iteration.txt", "1600"),
    ("configs/gpt2_deepspeed.yaml", "h32_pretrain_convert_eval", "global_step300/.whole", "global_step300"),
])
def test_the_final_save_is_converted_when_it_appears_between_claim_and_finish_check(
        tmp_path, monkeypatch, config, name, tracker, text):
    monkeypatch.chdir(REPO)
    stand_in = tmp_path / "orch"
    stand_in.write_text(STAND_IN)
    stand_in.chmod(0o755)
    job = _job(config, name, ORCH=str(stand_in), PYTHON="true", REAL_VENV=str(tmp_path / "venv"),
               LOGS=str(tmp_path / "runs"))
    for program in ("python", "lm_eval"):  # the real stack's converter and evaluator: stand-ins that succeed
        (tmp_path / "venv" / "bin").mkdir(parents=True, exist_ok=True)
        (tmp_path / "venv" / "bin" / program).symlink_to("/bin/true")
    run_dir = Path(job.params["RUN_DIR"])
    final = str(job.params["TRAIN_ITERS"])
    env = {**os.environ, "CALLS": str(tmp_path / "calls.log"), "FINAL": final, "FINAL_TEXT": text,
           "TRACKER": str(run_dir / "checkpoints" / tracker), "FINAL_DIR": str((run_dir / "checkpoints" / tracker).parent)}
    script = tmp_path / "job.sh"
    script.write_text(render_job(job))
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checkpoints converted and evaluated" in result.stdout
    assert f"ckpt done {run_dir} {final}" in calls  # converted, then the loop ended
