"""GPU-hours from what a job computes, beside the time-limit bound: training FLOPs / achieved throughput.

The time limit bounds what an attempt may cost; a cooldown that trains 0.2x its pretrain's tokens under the
same 24-hour limit is quoted at the same price. Where the job's Megatron command gives the model and the
iterations, its training FLOPs are known (`formulas.flops`: 6 x matmul parameters + attention, per token), and
with the config's `estimate_tflops` (TFLOP/s each GPU achieves, e.g. 150 for bf16 at about 50% of an A100's
peak) they become GPU-hours. Tokens are (`--train-iters` - the step it resumes from) x `--global-batch-size` x
`--seq-length`; the resume step is the job's RESUME_STEP / RESUME_ITER / CHECKPOINT_ITER / START_ITER value
(any case), as `orch lr check` reads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.check.data_paths import flag_values
from orchestrator.check.flags import DEFAULT_ENTRIES, megatron_invocations
from orchestrator.jobs import Job
from orchestrator.formulas.flops import training_flops_per_token
from orchestrator.planning.lr_check import RESUME_KEYS  # the resume step as `orch lr check` reads it

TFLOPS_KEY = "estimate_tflops"
DEFAULT_VOCAB = 50304  # GPT-2's vocabulary padded to a multiple of 128, Megatron's usual size, when none is given


def _int_flags(arguments: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for flag, values in flag_values(arguments, ("--num-layers", "--hidden-size", "--num-attention-heads",
                                                "--ffn-hidden-size", "--seq-length", "--train-iters",
                                                "--global-batch-size", "--num-query-groups", "--vocab-size",
                                                "--padded-vocab-size")):
        if values and values[0].isdigit():
            found[flag] = int(values[0])
        else:
            found.pop(flag, None)  # known only when the job runs
    return found


def resume_step(params: Mapping[str, Any]) -> int:
    for key, value in params.items():
        if isinstance(key, str) and key.lower() in RESUME_KEYS:
            try:
                return int(value)
            except (TypeError, ValueError):
                return 0
    return 0


def compute_gpu_hours(job: Job, script: str) -> float | None:
    """GPU-hours of the job's training FLOPs at `estimate_tflops`; None when either is unknown."""
    tflops = job.params.get(TFLOPS_KEY)
    if tflops in (None, ""):
        return None
    try:
        throughput = float(tflops) * 1e12
    except (TypeError, ValueError):
        return None
    invocations = megatron_invocations(script, DEFAULT_ENTRIES)
    if not invocations or throughput <= 0:
        return None
    arguments = invocations[-1].arguments
    flags = _int_flags(arguments)
    needed = ("--num-layers", "--hidden-size", "--num-attention-heads", "--seq-length", "--train-iters",
              "--global-batch-size")
    if any(flag not in flags for flag in needed):
        return None
    hidden, seq = flags["--hidden-size"], flags["--seq-length"]
    swiglu = "--swiglu" in arguments
    # Megatron's default FFN width: 4h, or 2/3 of that rounded down to a multiple of 64 with SwiGLU.
    ffn = flags.get("--ffn-hidden-size") or (int(4 * hidden * 2 / 3 / 64) * 64 if swiglu else 4 * hidden)
    grouped = "--group-query-attention" in arguments
    try:
        per_token = training_flops_per_token(
            flags["--num-layers"], hidden, flags["--num-attention-heads"], ffn,
            flags.get("--padded-vocab-size") or flags.get("--vocab-size") or DEFAULT_VOCAB, seq,
            kv_heads=flags.get("--num-query-groups") if grouped else None, gated_mlp=swiglu)
    except ValueError:
        return None
    steps = max(0, flags["--train-iters"] - resume_step(job.params))
    tokens = steps * flags["--global-batch-size"] * seq
    return tokens * per_token / throughput / 3600
