"""Megatron's start-up arithmetic for one job: what `validate_args` and the model config refuse at start-up.

The world size is the job's GPU count (one rank per GPU, as the Megatron templates launch it), read from its
`#SBATCH` lines. The rules and their wording follow NVIDIA/Megatron-LM @d98e8a64 (the pinned parser):
- megatron/training/arguments.py `validate_args`: the world size must be divisible by tensor x pipeline x
  context parallel size ("world size (W) is not divisible by tensor model parallel size (T) times pipeline
  model parallel size (P) times context parallel size (C)"); data-parallel size = W / (T x P x C); a missing
  --global-batch-size is micro-batch x data-parallel; --hidden-size divisible by --num-attention-heads when
  --kv-channels is not given; --max-position-embeddings at least --seq-length (learned absolute positions);
- megatron/core/num_microbatches_calculator.py `ConstantNumMicroBatches`: "global batch size (G) is not
  divisible by micro batch size (M) times data parallel size (D)" (without --rampup-batch-size);
- megatron/core/transformer/transformer_config.py `TransformerConfig.__post_init__`: "num_attention_heads (H)
  must be a multiple of tensor_model_parallel_size (T)", the same for num_query_groups, and num_layers a
  multiple of the pipeline size when no uneven first/last stage is set.
Argonne's Megatron-DeepSpeed @ffa3456d keeps the world-size, batch and head rules (its arguments.py and
microbatches.py). Values written with `$` are known only when the job runs: those rules are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.check.data_paths import flag_values

_INT_FLAGS = ("--tensor-model-parallel-size", "--pipeline-model-parallel-size", "--context-parallel-size",
              "--micro-batch-size", "--global-batch-size", "--num-attention-heads", "--num-layers", "--hidden-size",
              "--seq-length", "--max-position-embeddings", "--num-query-groups", "--kv-channels",
              "--decoder-first-pipeline-num-layers", "--decoder-last-pipeline-num-layers",
              "--num-layers-per-virtual-pipeline-stage")


def _values(arguments: Sequence[str]) -> tuple[dict[str, int], set[str]]:
    """The last value of each integer flag, and the flags present (valued or not)."""
    found: dict[str, int] = {}
    present: set[str] = set()
    for flag, values in flag_values(arguments, (*_INT_FLAGS, "--rampup-batch-size", "--group-query-attention",
                                                "--position-embedding-type")):
        present.add(flag)
        if flag in _INT_FLAGS:  # the last occurrence wins, as in argparse; `$VAR` makes it unknown
            if values and values[0].lstrip("-").isdigit():
                found[flag] = int(values[0])
            else:
                found.pop(flag, None)
    return found, present


def parallelism_problems(arguments: Sequence[str], world_size: int) -> list[str]:
    """Each rule the job's command breaks at its world size (empty: it starts)."""
    values, present = _values(arguments)
    tp = values.get("--tensor-model-parallel-size", 1)
    pp = values.get("--pipeline-model-parallel-size", 1)
    cp = values.get("--context-parallel-size", 1)
    problems: list[str] = []
    model = tp * pp * cp
    if world_size % model:
        return [f"world size ({world_size}) is not divisible by tensor model parallel size ({tp}) times pipeline "
                f"model parallel size ({pp}) times context parallel size ({cp})"]
    data_parallel = world_size // model
    micro = values.get("--micro-batch-size")
    batch = values.get("--global-batch-size")
    if micro and batch and "--rampup-batch-size" not in present and batch % (micro * data_parallel):
        problems.append(f"global batch size ({batch}) is not divisible by micro batch size ({micro}) times data "
                        f"parallel size ({data_parallel} = {world_size} GPUs / TP {tp} x PP {pp} x CP {cp})")
    heads = values.get("--num-attention-heads")
    if heads and heads % tp:
        problems.append(f"num_attention_heads ({heads}) must be a multiple of tensor_model_parallel_size ({tp})")
    groups = values.get("--num-query-groups")
    if groups and "--group-query-attention" in present and groups % tp:
        problems.append(f"num_query_groups ({groups}) must be a multiple of tensor_model_parallel_size ({tp})")
    hidden = values.get("--hidden-size")
    if heads and hidden and "--kv-channels" not in values and hidden % heads:
        problems.append(f"hidden size ({hidden}) is not divisible by the number of attention heads ({heads})")
    layers = values.get("--num-layers")
    uneven = {"--decoder-first-pipeline-num-layers", "--decoder-last-pipeline-num-layers"} & values.keys()
    if layers and pp > 1 and not uneven and layers % pp:
        problems.append(f"num_layers ({layers}) must be a multiple of pipeline_model_parallel_size ({pp})")
    sequence, positions = values.get("--seq-length"), values.get("--max-position-embeddings")
    if sequence and positions and sequence > positions and "--position-embedding-type" not in present:
        problems.append(f"--seq-length ({sequence}) is longer than --max-position-embeddings ({positions})")
    return problems
