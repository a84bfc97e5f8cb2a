#!/usr/bin/env python3
"""Record LR curves computed by the frameworks' own scheduler code, as fixtures for orch's ports.

    scripts/record-lr-reference.py --megatron-lm GIT_DIR --megatron-deepspeed GIT_DIR [--out DIR]

GIT_DIR is a clone (or bare mirror) of NVIDIA/Megatron-LM or argonne-lcf/Megatron-DeepSpeed; the files
are read at its HEAD with `git show`, and the commit is written into the fixture. For every setting
below, the real `get_optimizer_param_scheduler` (from the trainer's training.py) builds the real
`OptimizerParamScheduler`, which is stepped the way the trainer steps it: `step(increment=global batch
size)` once per iteration, Megatron-DeepSpeed's consumed token count updated after each step. The LR of
the first parameter group after each iteration is written out exactly (JSON floats round-trip).

torch and Megatron's own helpers are replaced by stand-ins: the scheduler code only needs
`torch.Tensor` for an isinstance test, `get_args`, and a logger.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import itertools
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

SOURCES = {
    "megatron-lm": ("megatron/core/optimizer_param_scheduler.py", "megatron/training/training.py"),
    "megatron-deepspeed": ("megatron/optimizer_param_scheduler.py", "megatron/training.py"),
}
# Parser defaults of every flag the scheduler code reads (each framework's arguments.py / config dataclasses).
DEFAULTS = {
    "megatron-lm": dict(
        train_iters=None, train_samples=None, global_batch_size=1, lr=None, min_lr=0.0, lr_decay_style="linear",
        lr_decay_iters=None, lr_decay_samples=None, lr_warmup_fraction=None, lr_warmup_iters=0, lr_warmup_samples=0,
        lr_warmup_init=0.0, lr_wsd_decay_iters=None, lr_wsd_decay_samples=None, lr_wsd_decay_style="exponential",
        start_weight_decay=0.01, end_weight_decay=0.01, weight_decay_incr_style="constant",
        use_checkpoint_opt_param_scheduler=False, override_opt_param_scheduler=False,
    ),
    "megatron-deepspeed": dict(
        train_iters=None, train_samples=None, global_batch_size=1, seq_length=None, lr=None, min_lr=0.0,
        lr_decay_style="linear", lr_decay_iters=None, lr_decay_samples=None, lr_decay_tokens=None,
        lr_warmup_fraction=None, lr_warmup_iters=0, lr_warmup_samples=0, lr_warmup_tokens=None,
        lr_constant_tokens=None, lr_constant_fraction=0.001, lr_cooldown_tokens=None, lr_cooldown_fraction=0.65,
        lr_constant_plus_cooldown=False, lr_constant_plus_cooldown_frac=0.05, constant_lr=0.00011, train_tokens=None,
        start_weight_decay=0.01, end_weight_decay=0.01, weight_decay_incr_style="constant",
        use_checkpoint_opt_param_scheduler=False, override_opt_param_scheduler=False, consumed_train_tokens=0,
    ),
}


def base_style_cases(lengths: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The styles both Megatrons share, over run lengths x warmups x global batch 1 / 8 (sample-based runs keep
    their own batch size and take only sample-based warmups, as validate_args demands)."""
    cases = []
    warmups = [dict(), dict(lr_warmup_iters=6), dict(lr_warmup_fraction=0.1), dict(lr_warmup_samples=20)]
    for length, warmup, style, batch in itertools.product(
        lengths, warmups, ["constant", "linear", "cosine", "inverse-square-root"], [1, 8]
    ):
        sample_based = "train_samples" in length
        if sample_based != ("lr_warmup_samples" in warmup) and ("lr_warmup_iters" in warmup or "lr_warmup_samples" in warmup):
            continue
        if sample_based and batch == 8:
            continue
        case = dict(lr=0.003, min_lr=0.0003, lr_decay_style=style, **length, **warmup)
        if not sample_based:
            case["global_batch_size"] = batch
        cases.append(case)
    return cases


def settings_megatron_lm() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    lengths = [
        dict(train_iters=60),
        dict(train_iters=60, lr_decay_iters=45),
        dict(train_samples=240, global_batch_size=4),
        dict(train_samples=250, global_batch_size=4, lr_decay_samples=200),
    ]
    cases += base_style_cases(lengths)
    for wsd_style, length in itertools.product(["exponential", "linear", "cosine", "minus_sqrt"], lengths):
        case = dict(lr=0.01, min_lr=0.0, lr_decay_style="WSD", lr_wsd_decay_style=wsd_style, lr_warmup_fraction=0.05,
                    **length)
        case["lr_wsd_decay_samples" if "train_samples" in length else "lr_wsd_decay_iters"] = 40 if "train_samples" in length else 15
        cases.append(case)
    cases.append(dict(lr=0.002, lr_warmup_init=0.0005, lr_warmup_iters=10, train_iters=50, lr_decay_style="cosine"))
    cases.append(dict(lr=0.002, lr_warmup_init=0.0005, lr_warmup_iters=10, train_iters=50, global_batch_size=3,
                      lr_decay_style="inverse-square-root", min_lr=0.0001))
    return cases


def settings_megatron_deepspeed() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    lengths = [
        dict(train_iters=60),
        dict(train_iters=60, lr_decay_iters=50),
        dict(train_samples=240, global_batch_size=4),
    ]
    cases += base_style_cases(lengths)
    # constant + cooldown: fractions whose product with the decay samples is not whole (truncated)
    for length, frac, batch, warmup in itertools.product(
        lengths[:2], [0.05, 0.3, 1 / 3, 0.9], [1, 6], [dict(), dict(lr_warmup_iters=5)]
    ):
        cases.append(dict(lr=0.003, min_lr=0.00002, lr_decay_style="constant", lr_constant_plus_cooldown=True,
                          lr_constant_plus_cooldown_frac=frac, global_batch_size=batch, **length, **warmup))
    # infinite schedules
    for style, length, batch, fractions in itertools.product(
        INFINITE_STYLES, lengths, [1, 4], [dict(), dict(lr_cooldown_fraction=0.3, lr_constant_fraction=0.2)]
    ):
        if "train_samples" in length and batch == 4:
            continue
        case = dict(lr=0.003, min_lr=0.00003, lr_decay_style=style, lr_warmup_iters=5, constant_lr=0.001,
                    **length, **fractions)
        if "train_samples" in length:
            case.pop("lr_warmup_iters")
            case["lr_warmup_samples"] = 20
        else:
            case["global_batch_size"] = batch
        cases.append(case)
    # token-based decay (warmup in iterations, its token count taken at the end of warmup, or in tokens)
    for style, warmup in itertools.product(["linear", "cosine", "inverse-square-root"],
                                           [dict(lr_warmup_iters=5), dict(lr_warmup_tokens=2048)]):
        cases.append(dict(lr=0.003, min_lr=0.0003, lr_decay_style=style, train_iters=60, global_batch_size=4,
                          seq_length=128, lr_decay_tokens=25_000, **warmup))
    return cases


INFINITE_STYLES = ("infinite-cosine", "infinite-inv-square-root")


def git_show(git_dir: Path, path: str) -> str:
    return subprocess.run(["git", "-C", str(git_dir), "show", f"HEAD:{path}"], check=True, capture_output=True,
                          text=True).stdout


def git_commit(git_dir: Path) -> str:
    return subprocess.run(["git", "-C", str(git_dir), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


def function_source(module_text: str, name: str) -> str:
    tree = ast.parse(module_text)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return ast.get_source_segment(module_text, node) or ""
    raise SystemExit(f"{name} not found")


def install_stand_ins(args_holder: dict[str, Any]) -> None:
    torch = types.ModuleType("torch")
    torch.Tensor = type("Tensor", (), {})  # type: ignore[attr-defined]
    sys.modules["torch"] = torch
    megatron = types.ModuleType("megatron")
    megatron.print_rank_0 = lambda *a, **k: None  # type: ignore[attr-defined]
    megatron.get_args = lambda: args_holder["args"]  # type: ignore[attr-defined]
    megatron.__path__ = []  # type: ignore[attr-defined]
    core = types.ModuleType("megatron.core")
    core.__path__ = []  # type: ignore[attr-defined]
    utils = types.ModuleType("megatron.core.utils")
    utils.log_single_rank = lambda *a, **k: None  # type: ignore[attr-defined]
    sys.modules.update({"megatron": megatron, "megatron.core": core, "megatron.core.utils": utils})


def load_framework(framework: str, git_dir: Path, args_holder: dict[str, Any]):
    scheduler_path, training_path = SOURCES[framework]
    namespace: dict[str, Any] = {"__name__": f"reference_{framework.replace('-', '_')}"}
    exec(compile(git_show(git_dir, scheduler_path), scheduler_path, "exec"), namespace)
    factory_namespace = {
        "get_args": lambda: args_holder["args"],
        "update_train_iters": lambda args: None,  # only sets args.train_iters for batch-size rampup
        "OptimizerParamScheduler": namespace["OptimizerParamScheduler"],
    }
    exec(compile(function_source(git_show(git_dir, training_path), "get_optimizer_param_scheduler"),
                 training_path, "exec"), factory_namespace)
    return factory_namespace["get_optimizer_param_scheduler"]


def record(framework: str, git_dir: Path, settings: list[dict[str, Any]]) -> dict[str, Any]:
    args_holder: dict[str, Any] = {}
    install_stand_ins(args_holder)
    factory = load_framework(framework, git_dir, args_holder)
    cases = []
    for setting in settings:
        args = types.SimpleNamespace(**{**DEFAULTS[framework], **setting})
        args_holder["args"] = args
        optimizer = types.SimpleNamespace(param_groups=[{}])
        batch = args.global_batch_size
        with contextlib.redirect_stdout(io.StringIO()):  # Megatron-DeepSpeed prints inside get_lr
            scheduler = factory(optimizer)
            lrs = [optimizer.param_groups[0]["lr"]]
            iterations = args.train_iters or -(-args.train_samples // batch)
            for _ in range(iterations + 3):
                scheduler.step(increment=batch)
                lrs.append(optimizer.param_groups[0]["lr"])
                if hasattr(args, "consumed_train_tokens") and args.seq_length:
                    args.consumed_train_tokens += batch * args.seq_length  # train() does this after the step
        cases.append({"flags": setting, "lr": lrs})
    return {
        "framework": framework,
        "repository": "NVIDIA/Megatron-LM" if framework == "megatron-lm" else "argonne-lcf/Megatron-DeepSpeed",
        "commit": git_commit(git_dir),
        "files": list(SOURCES[framework]),
        "note": "lr[i] is the LR after i iterations, computed by the framework's own scheduler code",
        "cases": cases,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megatron-lm", type=Path, required=True, metavar="GIT_DIR")
    parser.add_argument("--megatron-deepspeed", type=Path, required=True, metavar="GIT_DIR")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "tests/fixtures/lr_reference")
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    for framework, git_dir, settings in (
        ("megatron-lm", options.megatron_lm, settings_megatron_lm()),
        ("megatron-deepspeed", options.megatron_deepspeed, settings_megatron_deepspeed()),
    ):
        for name in [n for n in sys.modules if n == "megatron" or n.startswith("megatron.") or n == "torch"]:
            del sys.modules[name]
        fixture = record(framework, git_dir, settings)
        path = options.out / f"{framework}.json"
        path.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
        print(f"{path}: {len(fixture['cases'])} settings from {fixture['repository']}@{fixture['commit'][:8]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
