"""Running examples/gpt2_deepspeed (the real training stack) from tests: the trainer under torchrun on 2 CPU ranks."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "gpt2_deepspeed"
LOG_LR = re.compile(r" iteration\s+(\d+)/\s*\d+ \|.*? learning rate: (\S+) \|")
VALIDATION = re.compile(r"validation loss at iteration (\d+)[^|]*\| lm loss value: (\S+) \|")


def real_env() -> dict[str, str]:
    return {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def train(venv: Path, *flags: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """train.py on 2 gloo ranks; the output is rank 0's Megatron-style log."""
    command = [str(venv / "bin" / "torchrun"), "--standalone", "--nproc_per_node", "2", str(EXAMPLE / "train.py"),
               "--hidden-size", "32", "--log-interval", "1", *flags]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=real_env(), cwd=EXAMPLE)


def logged_lrs(output: str) -> dict[int, str]:
    """Iteration -> the learning rate the log line prints (Megatron's `%.6E`)."""
    return {int(iteration): value for iteration, value in LOG_LR.findall(output)}
