"""The Megatron templates and the scaling campaign config: rendering, shell syntax, and running them.

The rendered scripts run for real with bash; only the cluster programs (`srun`, `scontrol`, the GPU
`python`, the converter and lm-eval) are stand-ins, at the subprocess edge.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from campaign_fixtures import make_checkpoint, write_tracker
from orchestrator.campaign.megatron_args import megatron_args
from orchestrator.config import expand_config, load_jobs
from orchestrator.jobs import Job
from orchestrator.render import TEMPLATE_FILTERS, render_job

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "scaling_exps.yaml"
ORCH_BIN = str(Path(sys.executable).parent / "orch")


# --- the filter -----------------------------------------------------------------------------------


def test_megatron_args_filter():
    flags = megatron_args(
        {
            "num_layers": 12,
            "bf16": True,
            "swiglu": False,
            "exit_duration_in_mins": None,
            "data_path": ["/d/a b", "/d/c"],
            "lr": 1e-4,
            "clip_grad": 1.0,
            "split": "99,1,0",
            "override_opt_param_scheduler": True,
            "--raw_flag": "x",
        }
    )
    assert shlex.split(flags) == [
        "--num-layers", "12", "--bf16", "--data-path", "/d/a b", "/d/c", "--lr", "0.0001", "--clip-grad", "1.0",
        "--split", "99,1,0", "--override-opt_param-scheduler", "--raw_flag", "x",
    ]
    assert megatron_args({"a_b": "it's"}, sep="\n") == "--a-b 'it'\"'\"'s'"
    assert TEMPLATE_FILTERS["megatron_args"] is megatron_args


# --- the campaign config --------------------------------------------------------------------------


def test_plan_shows_the_whole_grid():
    result = subprocess.run([ORCH_BIN, "plan", str(CONFIG)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    # 6 sizes x 5 LRs x 2 batch sizes x 2 bias x (pretrain + 3 cooldowns) x (train + convert_eval)
    assert "\n960 jobs\n" in result.stdout
    # Every job asks for GPUs with a time limit: a total, and subtotals by the grid's axes.
    assert "unbounded" not in result.stdout
    assert "\n  by MODE: TRAIN " in result.stdout and "\n  by PHASE: PRETRAIN " in result.stdout


def test_grid_values_follow_the_expressions():
    jobs = load_jobs(CONFIG)
    assert len({job.name for job in jobs}) == len(jobs)
    for job in jobs:
        p = job.params
        assert p["FFN_HIDDEN_SIZE"] == 4 * p["HIDDEN_SIZE"]
        assert p["LR"] * p["WEIGHT_DECAY"] == pytest.approx(1e-4)
        assert p["GLOBAL_BATCH_SIZE"] * p["SEQ_LENGTH"] == p["BATCH_TOKENS"] == p["TOKENS_PER_STEP"]
        assert 0 < p["LR_WARMUP_ITERS"] < p["TRAIN_ITERS"] - p["LR_WSD_DECAY_ITERS"]
        if p["PHASE"] == "COOLDOWN":
            assert p["START_ITER"] % p["SAVE_INTERVAL"] == 0  # the pretraining run saves that iteration
            assert p["START_ITER"] + p["LR_WSD_DECAY_ITERS"] == p["TRAIN_ITERS"]
            assert p["RUN_DIR"].endswith(f"/cooldown_s{p['CD_SCALE']}")
    counts = Counter((job.params["PHASE"], job.params["MODE"]) for job in jobs)
    assert counts == {("PRETRAIN", "TRAIN"): 120, ("PRETRAIN", "CONVERT_EVAL"): 120,
                      ("COOLDOWN", "TRAIN"): 360, ("COOLDOWN", "CONVERT_EVAL"): 360}


def test_conditions_are_wired_to_the_helpers():
    jobs = {job.name: job for job in load_jobs(CONFIG, filters=["MODEL_SIZE=10M", "LR=0.001", "BATCH_TOKENS=262144", "BIAS=with"])}
    exp = "10M_lr0.001_gbs128_biaswith"
    assert jobs[f"{exp}_pretrain_TRAIN"].start_condition_cmd == ""
    assert jobs[f"{exp}_pretrain_TRAIN"].termination_str == "after training is done"
    cooldown = jobs[f"{exp}_cd20_TRAIN"]
    assert cooldown.start_condition_cmd == (
        f"bash helpers/cooldown_helper.sh logs/scaling_exps {exp} {cooldown.params['START_ITER']} 20"
    )
    convert = jobs[f"{exp}_cd20_CONVERT_EVAL"]
    assert convert.start_condition_cmd == (
        f"bash helpers/convert_helper.sh logs/scaling_exps/{exp}/cooldown_s20 {cooldown.params['START_ITER'] + 1}"
    )
    assert f"iter_{cooldown.params['TRAIN_ITERS']}.done" in convert.termination_cmd


def test_every_rendered_script_is_valid_bash(tmp_path):
    jobs = load_jobs(CONFIG, filters=["MODEL_SIZE=10M,400M", "LR=0.01"])
    assert len(jobs) == 64
    for job in jobs:
        script = render_job(job)
        assert script.startswith("#!/bin/bash\n")
        assert f"#SBATCH --job-name={job.name}\n" in script
        assert f"#SBATCH --output={job.output_file}\n" in script
        path = tmp_path / f"{job.name}.sbatch"
        path.write_text(script)
        check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, f"{job.name}: {check.stderr}"
        if job.params["MODE"] == "TRAIN":
            assert "--lr-decay-style WSD" in script and "--lr-wsd-decay-iters" in script
            assert ("--override-opt_param-scheduler" in script) == (job.params["PHASE"] == "COOLDOWN")
            assert ("$ORCH cooldown link" in script) == (job.params["PHASE"] == "COOLDOWN")


# --- running the rendered scripts -----------------------------------------------------------------

BASE = {
    "cmd": "sbatch {sbatch_script}",
    "sbatch_script": "{RUN_DIR}/{name}.sbatch",
    "output_file": "{RUN_DIR}/{name}.out",
    "PARTITION": "gpu", "TIME": "01:00:00", "NODES": 2, "GPUS_PER_NODE": 2, "CPUS_PER_TASK": 4,
    "ORCH": ORCH_BIN,
}


def _job(params: dict) -> Job:
    (job,) = expand_config(params)
    return job


def _fake_bin(tmp_path: Path) -> Path:
    """srun runs its command once as rank 0; scontrol names two nodes; python records its argv as JSON."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "scontrol").write_text('#!/bin/bash\nprintf "node001\\nnode002\\n"\n')
    (bin_dir / "srun").write_text(
        '#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\nSLURM_PROCID=0 SLURM_LOCALID=0 exec "$@"\n'
    )
    (bin_dir / "python").write_text(
        "#!" + sys.executable + "\nimport json, os, sys\n"
        "print(json.dumps({'argv': sys.argv[1:], 'env': {k: os.environ.get(k) for k in "
        "('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT', 'CUDA_DEVICE_MAX_CONNECTIONS')}}))\n"
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir


def _run(script: str, tmp_path: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    path = tmp_path / "job.sbatch"
    path.write_text(script)
    env = dict(os.environ, PATH=f"{_fake_bin(tmp_path)}:/usr/bin:/bin", SLURM_JOB_NODELIST="node[001-002]",
               SLURM_JOB_ID="4242", SLURM_NNODES="2", **(env_extra or {}))
    env.pop("ORCH", None)
    return subprocess.run(["bash", str(path)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def _train_params(tmp_path: Path, phase: str) -> dict:
    return {
        **BASE,
        "name": f"t_{phase}",
        "template": str(REPO / "templates" / "megatron" / "train.sbatch.j2"),
        "PHASE": phase, "LOGS": str(tmp_path / "logs"), "EXP_NAME": "exp",
        "RUN_DIR": "{LOGS}/{EXP_NAME}" if phase == "PRETRAIN" else "{LOGS}/{EXP_NAME}/cooldown_s{CD_SCALE}",
        "CD_SCALE": 20, "START_ITER": 100,
        "NUM_LAYERS": 2, "HIDDEN_SIZE": 64, "FFN_HIDDEN_SIZE": 256, "NUM_ATTENTION_HEADS": 2, "SEQ_LENGTH": 128,
        "DISABLE_BIAS_LINEAR": True, "MICRO_BATCH_SIZE": 2, "GLOBAL_BATCH_SIZE": 8, "TRAIN_ITERS": 200,
        "LR": 1e-3, "MIN_LR": 0.0, "WEIGHT_DECAY": 0.1, "LR_WARMUP_ITERS": 10, "LR_WSD_DECAY_STYLE": "linear",
        "LR_WSD_DECAY_ITERS": 40, "DATA_PATH": "0.5 /data/a_text_document 0.5 /data/b_text_document",
        "TOKENIZER_MODEL": "gpt2", "SAVE_INTERVAL": 50, "EVAL_INTERVAL": 50, "MEGATRON_PATH": "/opt/megatron",
        "QOS": "debug", "SBATCH_EXTRA": "--exclusive\n--mem=0",
    }


def test_pretrain_script_launches_megatron_with_the_right_flags(tmp_path):
    job = _job(_train_params(tmp_path, "PRETRAIN"))
    script = render_job(job)
    assert "#SBATCH --qos=debug\n#SBATCH --time=01:00:00" in script and "#SBATCH --exclusive\n#SBATCH --mem=0\n" in script
    assert "#SBATCH --ntasks-per-node=2" in script and "#SBATCH --nodes=2" in script
    result = _run(script, tmp_path)
    assert result.returncode == 0, result.stderr
    launch = json.loads(result.stdout.strip().splitlines()[-1])
    argv = launch["argv"]
    assert argv[:2] == ["-u", "/opt/megatron/pretrain_gpt.py"]
    run_dir = str(tmp_path / "logs" / "exp")
    i = argv.index("--data-path")
    assert argv[i + 1 : i + 5] == ["0.5", "/data/a_text_document", "0.5", "/data/b_text_document"]
    assert argv[argv.index("--save") + 1] == argv[argv.index("--load") + 1] == f"{run_dir}/checkpoints"
    assert argv[argv.index("--tensorboard-dir") + 1] == f"{run_dir}/tensorboard"
    assert argv[argv.index("--lr-decay-style") + 1] == "WSD" and argv[argv.index("--lr-wsd-decay-iters") + 1] == "40"
    assert "--disable-bias-linear" in argv and "--override-opt_param-scheduler" not in argv
    assert launch["env"] == {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "4", "MASTER_ADDR": "node001",
                             "MASTER_PORT": str(20000 + 4242), "CUDA_DEVICE_MAX_CONNECTIONS": "1"}


def test_cooldown_script_links_the_pretraining_checkpoint_first(tmp_path):
    params = _train_params(tmp_path, "COOLDOWN")
    script = render_job(_job(params))
    early = _run(script, tmp_path)
    assert early.returncode == 1 and "not there yet" in early.stderr  # no pretraining checkpoint 100 yet
    make_checkpoint(tmp_path / "logs" / "exp" / "checkpoints", 100)
    result = _run(script, tmp_path)
    assert result.returncode == 0, result.stderr
    argv = json.loads(result.stdout.strip().splitlines()[-1])["argv"]
    branch = tmp_path / "logs" / "exp" / "cooldown_s20" / "checkpoints"
    assert argv[argv.index("--load") + 1] == str(branch)
    assert "--override-opt_param-scheduler" in argv
    assert (branch / "iter_0000100").is_symlink()
    assert (branch / "latest_checkpointed_iteration.txt").read_text().strip() == "100"


@pytest.mark.parametrize("phase", ["PRETRAIN", "COOLDOWN"])
def test_a_finished_run_is_not_started_again(tmp_path, phase):
    # A pre-queued segment that Slurm starts after the last one finished must not run Megatron: it would save the
    # final iteration again, and a cancel mid-save would leave the whole run's last checkpoint dead.
    params = _train_params(tmp_path, phase)
    script = render_job(_job(params))
    make_checkpoint(tmp_path / "logs" / "exp" / "checkpoints", 100)  # the cooldown's branch point
    run_dir = tmp_path / "logs" / "exp" / ("checkpoints" if phase == "PRETRAIN" else "cooldown_s20/checkpoints")
    make_checkpoint(run_dir, 200)
    write_tracker(run_dir, 150)  # a save that is not the last one: training goes on
    result = _run(script, tmp_path)
    assert result.returncode == 0 and "/opt/megatron/pretrain_gpt.py" in result.stdout, result.stderr
    write_tracker(run_dir, 200)  # the last save is whole
    result = _run(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "/opt/megatron/pretrain_gpt.py" not in result.stdout
    assert "after training is done" in result.stdout and "checkpoint 200 is whole" in result.stdout


def test_container_wraps_python(tmp_path):
    params = {**_train_params(tmp_path, "PRETRAIN"), "CONTAINER_IMAGE": "/img/megatron.sif", "CONTAINER_BINDS": "/data"}
    script = render_job(_job(params))
    assert 'RUN_IN="apptainer exec --nv --bind /data /img/megatron.sif"' in script


def test_convert_eval_script_converts_every_checkpoint_once_then_stops(tmp_path):
    run_dir = tmp_path / "run"
    for iteration in (100, 200, 300):
        make_checkpoint(run_dir / "checkpoints", iteration)
    write_tracker(run_dir / "checkpoints", 300)
    (run_dir / "converted_checkpoints").mkdir(parents=True)
    (run_dir / "converted_checkpoints" / "iter_100.done").write_text("")  # converted by an earlier job
    sample = tmp_path / "lm_eval_sample.json"
    sample.write_text(json.dumps({"results": {"hellaswag": {"alias": "hellaswag", "acc,none": 0.31}}}))
    params = {
        **BASE,
        "name": "conv",
        "template": str(REPO / "templates" / "megatron" / "convert_eval.sbatch.j2"),
        "NODES": 1, "RUN_DIR": str(run_dir), "TRAIN_ITERS": 300, "MIN_ITER": 0, "EVAL_TASKS": "hellaswag",
        "CONVERT_POLL_SECS": 1, "CONVERT_MAX_IDLE_SECS": 5,
        "CONVERT_CMD": 'ls "$ITER_CKPT_DIR" > "$HF_DIR/staged.txt" && cat "$ITER_CKPT_DIR/latest_checkpointed_iteration.txt" >> "$HF_DIR/staged.txt"',
        "EVAL_CMD": 'mkdir -p "$raw/model" && cp ' + str(sample) + ' "$raw/model/results_2024.json"',
    }
    result = _run(render_job(_job(params)), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "training finished" in result.stdout
    assert sorted(p.name for p in (run_dir / "converted_checkpoints").glob("*.done")) == [
        "iter_100.done", "iter_200.done", "iter_300.done"]
    assert not (run_dir / "converted_hf" / "iter_100").exists()
    for iteration in (200, 300):
        staged = (run_dir / "converted_hf" / f"iter_{iteration}" / "staged.txt").read_text().split()
        assert staged == [f"iter_{iteration:07d}", "latest_checkpointed_iteration.txt", str(iteration)]
    from orchestrator.campaign.results import read_eval_results

    assert read_eval_results(run_dir) == {200: {"hellaswag/acc": 0.31}, 300: {"hellaswag/acc": 0.31}}
    assert list((run_dir / "in_progress_checkpoints").glob("iter_*.lock")) == []


def test_convert_eval_failure_releases_the_claim(tmp_path):
    run_dir = tmp_path / "run"
    make_checkpoint(run_dir / "checkpoints", 100)
    params = {
        **BASE, "name": "conv", "template": str(REPO / "templates" / "megatron" / "convert_eval.sbatch.j2"),
        "NODES": 1, "RUN_DIR": str(run_dir), "TRAIN_ITERS": 300, "MIN_ITER": 0, "EVAL_TASKS": "x",
        "CONVERT_CMD": "false",
    }
    result = _run(render_job(_job(params)), tmp_path)
    assert result.returncode == 1 and "released" in result.stderr
    assert not (run_dir / "converted_checkpoints" / "iter_100.done").exists()
    assert list((run_dir / "in_progress_checkpoints").glob("iter_*.lock")) == []
