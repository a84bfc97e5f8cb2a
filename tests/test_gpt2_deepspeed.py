"""The real training stack (examples/gpt2_deepspeed): DeepSpeed on 2 CPU ranks, megatron-core's LR scheduler, a rank
killed mid-save, orch's resume point, DeepSpeed's own conversion and lm-evaluation-harness.

The LR train.py logs is megatron-core's `OptimizerParamScheduler` at work; `orch lr schedule` computes it from
the same flags without megatron-core. They must print the same value at every iteration, for a fresh run and
for a cooldown resumed from a save with --override-opt_param-scheduler.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from monitor_campaign import orch_command
from real_stack import EXAMPLE, VALIDATION, logged_lrs, real_env, train

pytestmark = [pytest.mark.real_stack, pytest.mark.slow]

BATCH = ["--global-batch-size", "16"]


def orch_lr(*flags: str) -> dict[int, str]:
    """`orch lr schedule --csv` for the flags, formatted as Megatron logs it."""
    result = subprocess.run(orch_command("lr", "schedule", "--framework", "megatron-lm", *BATCH, *flags, "--csv"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rows = [line.split(",") for line in result.stdout.split()[1:]]
    return {int(step): f"{float(lr):.6E}" for step, lr in rows}


@pytest.mark.parametrize("flags", [
    ["--train-iters", "24", "--lr", "1e-3", "--min-lr", "1e-4", "--lr-warmup-iters", "5", "--lr-decay-style", "cosine"],
    ["--train-iters", "24", "--lr", "2e-3", "--lr-warmup-iters", "3", "--lr-warmup-init", "1e-4",
     "--lr-decay-style", "WSD", "--lr-wsd-decay-style", "minus_sqrt", "--lr-wsd-decay-iters", "8",
     "--lr-decay-iters", "20"],
], ids=["cosine", "wsd-minus-sqrt"])
def test_logged_lr_is_orch_lr_schedule_at_every_step(real_stack, flags):
    result = train(real_stack, *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    logged = logged_lrs(result.stdout)
    assert sorted(logged) == list(range(1, 25))
    expected = orch_lr(*flags)
    assert {step: expected[step] for step in logged} == logged


def test_cooldown_resumed_from_a_save_follows_orch_lr_schedule(real_stack, tmp_path):
    pretrain = ["--train-iters", "20", "--lr", "2e-3", "--lr-warmup-iters", "4", "--lr-decay-style", "WSD",
                "--lr-wsd-decay-style", "linear", "--lr-wsd-decay-iters", "0"]
    first = train(real_stack, *pretrain, "--save", str(tmp_path / "pretrain"), "--save-interval", "10")
    assert first.returncode == 0, first.stderr[-3000:]
    assert logged_lrs(first.stdout) == {step: lr for step, lr in orch_lr(*pretrain).items() if 1 <= step <= 20}
    # constant + cooldown: branch at 10, decay linearly to 0 over the next 6 iterations
    cooldown = ["--train-iters", "16", "--lr", "2e-3", "--lr-warmup-iters", "4", "--lr-decay-style", "WSD",
                "--lr-wsd-decay-style", "linear", "--lr-wsd-decay-iters", "6"]
    second = train(real_stack, *cooldown, "--load", str(tmp_path / "pretrain"), "--ckpt-step", "10",
                   "--override-opt_param-scheduler", "--save", str(tmp_path / "cooldown"), "--save-interval", "6")
    assert second.returncode == 0, second.stderr[-3000:]
    logged = logged_lrs(second.stdout)
    assert sorted(logged) == list(range(11, 17))  # resumed at 10, not from scratch
    assert logged == {step: orch_lr(*cooldown)[step] for step in logged}
    assert logged[16] == f"{0.0:.6E}"


def _kill_job(job: subprocess.Popen, marker: Path) -> None:
    """SIGKILL torchrun and its ranks. torchrun starts each rank in a session of its own, so killing its process
    group leaves them running: they are found by their command line (which names this test's folder)."""
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if entry.name.isdigit() and str(marker).encode() in command and b"train.py" in command:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_rank_killed_mid_save_resumes_from_the_last_whole_save(real_stack, tmp_path):
    """Rank 1 stalls half-way through its shard of save 20 and the job is killed: DeepSpeed's `latest` names the
    dead save and DeepSpeed cannot resume from it; orch counts it incomplete, resumes at 10, and the re-saved 20
    converts and evaluates."""
    save = tmp_path / "checkpoints"
    flags = ["--train-iters", "30", "--lr", "2e-3", "--lr-warmup-iters", "4", "--lr-decay-style", "constant",
             "--save", str(save), "--load", str(save), "--save-interval", "10"]
    command = [str(real_stack / "bin" / "torchrun"), "--standalone", "--nproc_per_node", "2",
               str(EXAMPLE / "train.py"), "--hidden-size", "32", *flags, "--stall-save-at", "20"]
    job = subprocess.Popen(command, env=real_env(), cwd=EXAMPLE, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not (save / ".stalled_global_step20").exists():
            assert job.poll() is None and time.monotonic() < deadline, "rank 1 never reached the stall"
            time.sleep(0.5)
        time.sleep(1)  # rank 0 has finished its own files and `latest` by now (it waits for nobody)
    finally:
        _kill_job(job, save)

    assert (save / "latest").read_text().strip() == "global_step20"  # DeepSpeed's hint names the dead save
    explained = subprocess.run(orch_command("ckpt", "pending", str(tmp_path), "--explain"), capture_output=True,
                               text=True, timeout=60).stdout
    verdicts = dict(line.split("\t", 1) for line in explained.splitlines())
    assert verdicts["10"].startswith("pending")
    assert "zero_pp_rank_1_mp_rank_00_optim_states.pt is truncated" in verdicts["20"]

    # What a plain DeepSpeed resume does with it: load the tag `latest` names, and fail.
    plain = train(real_stack, *flags)
    assert plain.returncode != 0 and "central directory" in plain.stderr

    resumed = subprocess.run(orch_command("ckpt", "resume", str(tmp_path)), capture_output=True, text=True, timeout=60)
    assert resumed.stdout.strip() == "10"
    assert "moved global_step20" in resumed.stderr
    assert (save / "latest").read_text().strip() == "global_step10"
    assert not (save / "global_step20").exists() and len(list((save / ".incomplete").iterdir())) == 1

    again = train(real_stack, *flags, "--ckpt-step", "10", "--eval-interval", "10")
    assert again.returncode == 0, again.stderr[-3000:]
    assert min(logged_lrs(again.stdout)) == 11 and "after training is done" in again.stdout
    complete = subprocess.run(orch_command("ckpt", "pending", str(tmp_path), "--count"), capture_output=True,
                              text=True, timeout=60).stdout.strip()
    assert complete == "3"  # 10, 20 (saved again, whole) and 30

    hf = tmp_path / "hf20"
    converted = subprocess.run([str(real_stack / "bin" / "python"), str(EXAMPLE / "convert.py"), "--load", str(save),
                                "--iteration", "20", "--out", str(hf)], capture_output=True, text=True, timeout=300,
                               env=real_env(), cwd=EXAMPLE)
    assert converted.returncode == 0, converted.stderr[-3000:]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {path.name for path in hf.iterdir()}
    evaluated = subprocess.run(
        [str(real_stack / "bin" / "lm_eval"), "--model", "hf", "--model_args", f"pretrained={hf},tokenizer={hf}",
         "--device", "cpu", "--tasks", "grammar_ppl", "--include_path", ".", "--output_path", str(tmp_path / "eval")],
        capture_output=True, text=True, timeout=300, env=real_env(), cwd=EXAMPLE / "tasks")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    results = json.loads(next((tmp_path / "eval").rglob("results_*.json")).read_text())["results"]["grammar_ppl"]
    # lm-eval's per-word perplexity of the converted model is the trainer's own validation loss, give or take
    # the sample (held-out text vs validation batches): the conversion kept the weights.
    validation = {int(iteration): float(value) for iteration, value in VALIDATION.findall(again.stdout)}
    assert math.log(results["word_perplexity,none"]) == pytest.approx(validation[20], abs=0.15)
