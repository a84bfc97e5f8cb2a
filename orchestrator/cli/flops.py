"""`orch flops`: parameters, training FLOPs per token, tokens per step and iterations for a budget."""

from __future__ import annotations

import argparse
import re

from orchestrator.errors import UserError
from orchestrator.formulas import flops

_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}
_COUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMBGT]?)\s*$", re.IGNORECASE)


def parse_count(text: str) -> int:
    """A token count as users write it: 2000000, 2e12, 2T, 500B, 1.5M."""
    match = _COUNT.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count (examples: 2e12, 2T, 500B)")
    number, suffix = match.groups()
    scale = _SUFFIXES[suffix.upper()]
    value = float(number) * scale if ("." in number or "e" in number.lower()) else int(number) * scale
    return int(round(value))


def _human(value: float) -> str:
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3f}{suffix}"
    return f"{value:g}"


def run_flops(args: argparse.Namespace) -> int:
    ffn = args.ffn_hidden if args.ffn_hidden is not None else 4 * args.hidden
    shape = dict(
        layers=args.layers, hidden=args.hidden, heads=args.heads, ffn_hidden=ffn, kv_heads=args.kv_heads, gated_mlp=not args.no_gated_mlp
    )
    try:
        total = flops.model_parameters(vocab=args.vocab, tied_embeddings=args.tied_embeddings, **shape)
        non_embedding = flops.non_embedding_parameters(**shape)
        per_token = flops.training_flops_per_token(vocab=args.vocab, seq_len=args.seq_len, **shape)
        step_tokens = None
        if args.gpus is not None:
            step_tokens = flops.tokens_per_step(args.gpus, args.micro_batch, args.grad_acc, args.seq_len, args.model_parallel)
    except ValueError as error:
        raise UserError(str(error)) from None

    mlp = "gated (SwiGLU)" if not args.no_gated_mlp else "plain"
    print(f"ffn_hidden:                 {ffn} ({mlp} MLP)")
    print(f"parameters:                 {total} ({_human(total)})")
    print(f"parameters w/o embeddings:  {non_embedding} ({_human(non_embedding)})")
    print(f"training FLOPs per token:   {per_token} ({_human(per_token)})  [6*N_matmul + 12*L*s*h]")
    if step_tokens is not None:
        print(f"tokens per step:            {step_tokens}")
    if args.tokens is not None:
        print(f"training FLOPs for budget:  {per_token * args.tokens:.4g}  ({_human(args.tokens)} tokens)")
        if step_tokens is not None:
            print(f"iterations for budget:      {flops.iterations_for_tokens(args.tokens, step_tokens)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "flops",
        help="model parameters, training FLOPs per token, tokens per step, iterations for a token budget",
        description="GPT/Llama-style decoder sizes and costs (formulas: docs/planning.md).",
    )
    parser.add_argument("--layers", type=int, required=True)
    parser.add_argument("--hidden", type=int, required=True, help="model width h")
    parser.add_argument("--heads", type=int, required=True, help="attention (query) heads")
    parser.add_argument("--kv-heads", type=int, help="key/value heads for GQA (default: --heads)")
    parser.add_argument("--ffn-hidden", type=int, help="MLP width (default: 4 * hidden)")
    parser.add_argument("--vocab", type=int, required=True, help="(padded) vocabulary size")
    parser.add_argument("--seq-len", type=int, required=True)
    parser.add_argument("--no-gated-mlp", action="store_true", help="two-matrix GELU MLP instead of SwiGLU")
    parser.add_argument("--tied-embeddings", action="store_true", help="output head shares the input embedding")
    parser.add_argument("--gpus", type=int, help="GPUs (with --micro-batch and --grad-acc: tokens per step)")
    parser.add_argument("--micro-batch", type=int, default=1, help="micro batch per GPU (default: %(default)s)")
    parser.add_argument("--grad-acc", type=int, default=1, help="gradient accumulation steps (default: %(default)s)")
    parser.add_argument("--model-parallel", type=int, default=1, help="tensor x pipeline parallel size (default: %(default)s)")
    parser.add_argument("--tokens", type=parse_count, help="token budget (2e12, 2T, 500B): total FLOPs and iterations")
    parser.set_defaults(handler=run_flops)
