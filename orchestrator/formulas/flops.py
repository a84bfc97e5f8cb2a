"""Model size and training cost of a GPT/Llama-style decoder, for planning and for `expr()`.

Parameters (no biases, as in Llama; `gated_mlp` = SwiGLU with three FFN matrices, else two):
  per layer: attention  Q, O: h*h each; K, V: h * kv_heads * (h / heads) each
             MLP        (3 if gated else 2) * h * ffn
             norms      2 * h
  non-embedding = layers * per_layer + h (final norm)
  total         = non-embedding + vocab * h (input embedding) + vocab * h (output head, unless tied)
  Positions are rotary (no parameters).

Training FLOPs per token (forward + backward = 3 x forward, 2 FLOPs per multiply-add):
  6 * N_matmul + 12 * layers * seq_len * h
where N_matmul counts the weights used in matrix multiplies: every layer's attention and MLP weights
plus the output head (the input embedding is a lookup; norms are negligible). 12*L*s*h is the
attention itself (Q.K^T and scores.V: 4*s*h forward per layer and token), without a discount for
the causal mask. This is the Chinchilla accounting (Hoffmann et al. 2022, appendix F) and equals
`num_floating_point_operations` in (argonne-lcf) Megatron-DeepSpeed's training.py. Kaplan et al.
2020 use 6N + 6*L*s*h instead (N without embeddings and output head, only Q.K^T counted).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _kv_heads(heads: int, kv_heads: int | None) -> int:
    kv = heads if kv_heads is None else kv_heads
    _check_positive(kv_heads=kv)
    if heads % kv:
        raise ValueError(f"heads ({heads}) must be a multiple of kv_heads ({kv})")
    return kv


def _matmul_params_per_layer(hidden: int, heads: int, ffn_hidden: int, kv_heads: int | None, gated_mlp: bool) -> int:
    _check_positive(hidden=hidden, heads=heads, ffn_hidden=ffn_hidden)
    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
    kv_width = _kv_heads(heads, kv_heads) * (hidden // heads)
    attention = 2 * hidden * hidden + 2 * hidden * kv_width
    mlp = (3 if gated_mlp else 2) * hidden * ffn_hidden
    return attention + mlp


def non_embedding_parameters(
    layers: int,
    hidden: int,
    heads: int,
    ffn_hidden: int,
    kv_heads: int | None = None,
    gated_mlp: bool = True,
) -> int:
    """Parameters outside the embedding and output head (Kaplan's N)."""
    _check_positive(layers=layers)
    per_layer = _matmul_params_per_layer(hidden, heads, ffn_hidden, kv_heads, gated_mlp) + 2 * hidden
    return layers * per_layer + hidden


def model_parameters(
    layers: int,
    hidden: int,
    heads: int,
    ffn_hidden: int,
    vocab: int,
    kv_heads: int | None = None,
    gated_mlp: bool = True,
    tied_embeddings: bool = False,
) -> int:
    """All parameters, embeddings and output head included."""
    _check_positive(vocab=vocab)
    embeddings = vocab * hidden * (1 if tied_embeddings else 2)
    return non_embedding_parameters(layers, hidden, heads, ffn_hidden, kv_heads, gated_mlp) + embeddings


def training_flops_per_token(
    layers: int,
    hidden: int,
    heads: int,
    ffn_hidden: int,
    vocab: int,
    seq_len: int,
    kv_heads: int | None = None,
    gated_mlp: bool = True,
) -> int:
    """Forward + backward FLOPs per trained token: 6 * N_matmul + 12 * layers * seq_len * hidden."""
    _check_positive(layers=layers, vocab=vocab, seq_len=seq_len)
    matmul_params = layers * _matmul_params_per_layer(hidden, heads, ffn_hidden, kv_heads, gated_mlp) + vocab * hidden
    return 6 * matmul_params + 12 * layers * seq_len * hidden


def tokens_per_step(gpus: int, micro_batch: int, grad_acc: int, seq_len: int, model_parallel: int = 1) -> int:
    """Tokens per optimizer step: data-parallel ranks (gpus / model_parallel) x micro batch x grad-acc x seq len."""
    _check_positive(gpus=gpus, micro_batch=micro_batch, grad_acc=grad_acc, seq_len=seq_len, model_parallel=model_parallel)
    if gpus % model_parallel:
        raise ValueError(f"gpus ({gpus}) must be a multiple of model_parallel ({model_parallel})")
    return gpus // model_parallel * micro_batch * grad_acc * seq_len


def iterations_for_tokens(tokens: int | float, tokens_per_step_: int) -> int:
    """Optimizer steps needed to train on at least `tokens` tokens (rounded up)."""
    _check_positive(tokens_per_step=tokens_per_step_)
    if tokens < 0 or not math.isfinite(tokens):
        raise ValueError(f"tokens must be a non-negative number, got {tokens!r}")
    whole = int(tokens)
    if whole == tokens:  # exact integer arithmetic: no float error for 10**12-sized budgets
        return -(-whole // tokens_per_step_)
    return math.ceil(tokens / tokens_per_step_)


# The names `expr()` may call (merged into orchestrator.config.expressions.EXPR_FUNCTIONS).
FLOPS_EXPR_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "model_params": model_parameters,
    "non_embedding_params": non_embedding_parameters,
    "flops_per_token": training_flops_per_token,
    "tokens_per_step": tokens_per_step,
    "iters_for_tokens": iterations_for_tokens,
}
