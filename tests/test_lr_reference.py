"""orch's LR schedules equal the frameworks' own scheduler code at every iteration, to the last bit.

The fixtures were computed by the real `get_optimizer_param_scheduler` + `OptimizerParamScheduler` of
NVIDIA/Megatron-LM and argonne-lcf/Megatron-DeepSpeed (`scripts/record-lr-reference.py`; the commit is in
each file), stepped as the trainers step them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.planning.lr_schedules import FRAMEWORKS

FIXTURES = Path(__file__).parent / "fixtures" / "lr_reference"


def _cases() -> list[tuple[str, int, dict, list[float]]]:
    found = []
    for path in sorted(FIXTURES.glob("*.json")):
        fixture = json.loads(path.read_text())
        for index, case in enumerate(fixture["cases"]):
            found.append((fixture["framework"], index, case["flags"], case["lr"]))
    return found


CASES = _cases()


def test_the_reference_covers_the_settings_that_used_to_differ() -> None:
    flags = [(framework, case) for framework, _index, case, _lrs in CASES]
    assert len(flags) >= 160
    # inverse-square-root without warmup, global batch > 1 (the scheduler's max(warmup_samples, 1))
    assert any(c.get("lr_decay_style") == "inverse-square-root" and c.get("global_batch_size", 1) > 1
               and not any(k.startswith("lr_warmup") for k in c) for _f, c in flags)
    # constant + cooldown whose cooldown share is not a whole number of samples, and with --lr-decay-iters
    assert any(c.get("lr_constant_plus_cooldown") and "lr_decay_iters" in c for _f, c in flags)
    assert sum(c.get("lr_decay_style", "").startswith("infinite") for _f, c in flags) >= 8


@pytest.mark.parametrize(("framework", "index", "flags", "expected"), CASES,
                         ids=[f"{framework}-{index}" for framework, index, _flags, _lrs in CASES])
def test_every_iteration_equals_the_framework(framework: str, index: int, flags: dict, expected: list[float]) -> None:
    module = FRAMEWORKS[framework]
    got = [lr for _step, lr in module.curve(range(len(expected)), **flags)]
    mismatches = [(step, want, have) for step, (want, have) in enumerate(zip(expected, got)) if want != have]
    assert not mismatches, f"{flags}: first differing iterations (step, framework, orch): {mismatches[:3]}"
    assert module.lr_at(len(expected) - 1, **flags) == expected[-1]


def _flags_to_argv(flags: dict) -> list[str]:
    from orchestrator.cli.lr import _flag_spelling

    argv: list[str] = []
    for name, value in flags.items():
        if value is True:
            argv.append(_flag_spelling(name))
        else:
            argv += [_flag_spelling(name), repr(value) if isinstance(value, float) else str(value)]
    return argv


@pytest.mark.parametrize("output", ["--csv", "--json"])
def test_cli_prints_every_lr_to_the_last_bit(output: str, capsys: pytest.CaptureFixture) -> None:
    from orchestrator.cli import main

    framework, _index, flags, expected = next(case for case in CASES if case[2].get("lr_constant_plus_cooldown"))
    until = str(len(expected) - 1)
    assert main(["lr", "schedule", "--framework", framework, *_flags_to_argv(flags), output, "--until", until]) == 0
    text = capsys.readouterr().out
    if output == "--csv":
        printed = [float(line.split(",")[1]) for line in text.splitlines()[1:]]
    else:
        document = json.loads(text)
        assert document["flags"] == flags
        printed = [lr for _step, lr in document["points"]]
    assert printed == expected


def test_cli_at_prints_the_lr_to_the_last_bit(capsys: pytest.CaptureFixture) -> None:
    from orchestrator.cli import main

    framework, _index, flags, expected = next(case for case in CASES if case[2].get("lr_decay_style") == "cosine")
    assert main(["lr", "schedule", "--framework", framework, *_flags_to_argv(flags), "--at", "7"]) == 0
    assert float(capsys.readouterr().out) == expected[7]
