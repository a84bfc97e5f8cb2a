"""Model sizes and FLOPs (`orch flops`, the functions in `expr()`): expected values computed by hand or
from a published model size."""

from __future__ import annotations

from fractions import Fraction

import pytest

from orchestrator.cli import main as orch_main
from orchestrator.cli.flops import parse_count
from orchestrator.config import expand_config
from orchestrator.config.expressions import EXPR_FUNCTIONS, evaluate_expression
from orchestrator.formulas.flops import (
    FLOPS_EXPR_FUNCTIONS,
    iterations_for_tokens,
    model_parameters,
    non_embedding_parameters,
    tokens_per_step,
    training_flops_per_token,
)

LLAMA2_7B = dict(layers=32, hidden=4096, heads=32, ffn_hidden=11008)


def test_llama2_7b_parameter_count() -> None:
    # Meta's published count for Llama-2-7B: 6,738,415,616 (untied 32000 x 4096 embedding and head).
    assert model_parameters(vocab=32000, **LLAMA2_7B) == 6_738_415_616
    assert non_embedding_parameters(**LLAMA2_7B) == 6_738_415_616 - 2 * 32000 * 4096


def test_small_model_by_hand() -> None:
    # layers 2, hidden 8, heads 2 (head dim 4), kv_heads 1 (K, V width 4), ffn 16, vocab 10, gated:
    # per layer: Q+O 2*64 = 128, K+V 2*8*4 = 64, MLP 3*8*16 = 384, norms 16 -> 592; x2 + final norm 8 = 1192.
    shape = dict(layers=2, hidden=8, heads=2, ffn_hidden=16, kv_heads=1)
    assert non_embedding_parameters(**shape) == 1192
    assert model_parameters(vocab=10, **shape) == 1192 + 2 * 80
    assert model_parameters(vocab=10, tied_embeddings=True, **shape) == 1192 + 80
    # Plain MLP: 2*8*16 = 256 instead of 384 per layer.
    assert non_embedding_parameters(gated_mlp=False, **shape) == 1192 - 2 * 128
    # FLOPs/token at seq 32: N_matmul = 2*(128+64+384) + 80 (head) = 1232 -> 6*1232 = 7392; attention 12*2*32*8 = 6144.
    assert training_flops_per_token(vocab=10, seq_len=32, **shape) == 7392 + 6144


@pytest.mark.parametrize(
    ("shape", "kv_heads", "gated"),
    [(LLAMA2_7B, None, True), (dict(layers=80, hidden=8192, heads=64, ffn_hidden=28672), 8, True),
     (dict(layers=24, hidden=2048, heads=16, ffn_hidden=8192), None, False)],
)  # fmt: skip
def test_flops_match_megatron_deepspeed_formula(shape: dict, kv_heads: int | None, gated: bool) -> None:
    # num_floating_point_operations (argonne-lcf Megatron-DeepSpeed training.py), per sequence:
    # 12 s L h^2 (1 + ffn/h * (3/2 if gated) + kv/heads + s/h + V/(2 L h)); divided by s for one token.
    layers, h, heads, ffn = shape["layers"], shape["hidden"], shape["heads"], shape["ffn_hidden"]
    vocab, seq = 50304, 4096
    kv = kv_heads or heads
    megatron = 12 * layers * h * h * (
        1 + Fraction(ffn, h) * (Fraction(3, 2) if gated else 1) + Fraction(kv, heads) + Fraction(seq, h) + Fraction(vocab, 2 * layers * h)
    )  # fmt: skip
    ours = training_flops_per_token(vocab=vocab, seq_len=seq, kv_heads=kv_heads, gated_mlp=gated, **shape)
    assert ours == megatron


def test_tokens_per_step_and_iterations() -> None:
    assert tokens_per_step(gpus=768, micro_batch=1, grad_acc=1, seq_len=4096) == 3_145_728
    assert tokens_per_step(gpus=64, micro_batch=2, grad_acc=8, seq_len=2048, model_parallel=4) == 16 * 2 * 8 * 2048
    # 2e12 / 3145728 = 635782.95 -> 635783 steps; an exact multiple needs no extra step.
    assert iterations_for_tokens(2 * 10**12, 3_145_728) == 635_783
    assert iterations_for_tokens(2e12, 3_145_728) == 635_783
    assert iterations_for_tokens(3_145_728 * 10, 3_145_728) == 10
    assert iterations_for_tokens(1.5, 1) == 2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: tokens_per_step(6, 1, 1, 1024, model_parallel=4), "multiple of model_parallel"),
        (lambda: tokens_per_step(0, 1, 1, 1024), "gpus must be a positive integer"),
        (lambda: model_parameters(2, 10, 3, 16, 10), r"hidden \(10\) must be a multiple of heads \(3\)"),
        (lambda: model_parameters(2, 8, 4, 16, 10, kv_heads=3), r"heads \(4\) must be a multiple of kv_heads \(3\)"),
        (lambda: iterations_for_tokens(-1, 10), "tokens must be a non-negative number"),
        (lambda: training_flops_per_token(2, 8, 2, 16, 10, seq_len=0), "seq_len must be a positive integer"),
    ],
)
def test_bad_shapes(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_functions_are_available_in_expr() -> None:
    for name in ("model_params", "non_embedding_params", "flops_per_token", "tokens_per_step", "iters_for_tokens"):
        assert EXPR_FUNCTIONS[name] is FLOPS_EXPR_FUNCTIONS[name]
    for name in ("sqrt", "log", "ceil", "floor"):
        assert name in EXPR_FUNCTIONS
    assert evaluate_expression("expr(model_params(32, 4096, 32, 11008, 32000))") == 6_738_415_616
    assert evaluate_expression("expr(iters_for_tokens(2e12, tokens_per_step(768, 1, 1, 4096)))") == 635_783


def test_expr_through_the_config_engine() -> None:
    config = {
        "name": "m{layers}",
        "template": "t.sbatch",
        "sbatch_script": "s.sbatch",
        "output_file": "o.log",
        "cmd": "sbatch {sbatch_script}",
        "layers": [2, 4],
        "hidden": 8,
        "n_params": "expr(model_params({layers}, {hidden}, 2, 16, 10, kv_heads=1))",
        "train_iters": "expr(ceil(sqrt(iters_for_tokens(10**6, tokens_per_step(8, 1, 2, 32)))))",
        "log_flops": "expr(floor(log(flops_per_token({layers}, {hidden}, 2, 16, 10, 32, kv_heads=1), 10)))",
    }
    jobs = expand_config(config)
    # 2 layers: 1352 (see test_small_model_by_hand); 4 layers: 4*592 + 8 + 160 = 2536.
    assert [job.params["n_params"] for job in jobs] == [1352, 2536]
    # 8*1*2*32 = 512 tokens/step; 1e6/512 = 1953.1 -> 1954 steps; sqrt = 44.2 -> 45.
    assert [job.params["train_iters"] for job in jobs] == [45, 45]
    # 13536 FLOPs/token (2 layers) -> log10 4.13 -> 4; 4 layers: 6*(4*576+80) + 12*4*32*8 = 14304+12288 = 26592 -> 4.
    assert [job.params["log_flops"] for job in jobs] == [4, 4]


def test_parse_count() -> None:
    assert parse_count("2T") == 2 * 10**12
    assert parse_count("500B") == 500 * 10**9
    assert parse_count("1.5M") == 1_500_000
    assert parse_count("2e12") == 2 * 10**12
    assert parse_count("123") == 123


def test_orch_flops(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["flops", "--layers", "32", "--hidden", "4096", "--heads", "32", "--ffn-hidden", "11008", "--vocab", "32000",
            "--seq-len", "4096", "--gpus", "768", "--tokens", "2T"]  # fmt: skip
    assert orch_main(argv) == 0
    out = capsys.readouterr().out
    assert "parameters:                 6738415616 (6.738B)" in out
    assert "tokens per step:            3145728" in out
    assert "iterations for budget:      635783" in out
    assert orch_main(["flops", "--layers", "2", "--hidden", "10", "--heads", "3", "--vocab", "10", "--seq-len", "8"]) == 2
    assert "hidden (10) must be a multiple of heads (3)" in capsys.readouterr().err
