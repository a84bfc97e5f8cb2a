"""LR schedules against values computed by hand from each framework's formulas."""

from __future__ import annotations

import math

import pytest

from orchestrator.errors import UserError
from orchestrator.planning.lr_schedules import megatron_deepspeed as mds
from orchestrator.planning.lr_schedules import megatron_lm as mlm
from orchestrator.planning.lr_schedules import schedules_and_scaling as sas

# -- Megatron-LM: lr 1.0, min 0.1, warmup 10 from 0, decay to step 110 (100 decay steps) --------------
BASE = dict(lr=1.0, min_lr=0.1, train_iters=110, lr_warmup_iters=10)


@pytest.mark.parametrize(
    ("style", "step", "expected"),
    [
        ("linear", 0, 0.0),
        ("linear", 5, 0.5),
        ("linear", 10, 1.0),  # t = W is inside the warmup and exactly lr
        ("linear", 60, 0.1 + 0.9 * 0.5),
        ("linear", 110, 0.1),
        ("linear", 111, 0.1),  # past the horizon: min_lr
        ("cosine", 60, 0.1 + 0.9 * 0.5),  # half way: cos(pi/2) = 0
        ("cosine", 35, 0.1 + 0.9 * 0.5 * (math.cos(math.pi / 4) + 1)),
        ("cosine", 110, 0.1),
        ("constant", 5, 0.5),
        ("constant", 60, 1.0),
        ("constant", 10_000, 1.0),  # constant ignores the horizon
        ("inverse-square-root", 40, 0.5),  # sqrt(10/40)
        ("inverse-square-root", 1000, 0.1),  # floored at min_lr ... and past the horizon
    ],
)
def test_megatron_lm_styles(style: str, step: int, expected: float) -> None:
    assert mlm.lr_at(step, lr_decay_style=style, **BASE) == pytest.approx(expected)


def test_megatron_lm_warmup_init_and_min_lr_zero() -> None:
    params = dict(lr=1.0, train_iters=100, lr_warmup_iters=10, lr_warmup_init=0.2, lr_decay_style="linear")
    assert mlm.lr_at(0, **params) == pytest.approx(0.2)
    assert mlm.lr_at(5, **params) == pytest.approx(0.6)
    assert mlm.lr_at(55, **params) == pytest.approx(0.5)  # min_lr defaults to 0
    assert mlm.lr_at(100, **params) == 0.0
    assert mlm.lr_at(101, **params) == 0.0


def test_megatron_lm_decay_iters_and_warmup_fraction() -> None:
    # decay ends at lr_decay_iters (80), not train_iters; warmup = 0.1 * 80 = 8 iterations
    params = dict(lr=1.0, train_iters=100, lr_decay_iters=80, lr_warmup_fraction=0.1, lr_decay_style="linear")
    assert mlm.lr_at(4, **params) == pytest.approx(0.5)
    assert mlm.lr_at(44, **params) == pytest.approx(0.5)
    assert mlm.lr_at(90, **params) == 0.0


WSD = dict(lr=1.0, min_lr=0.0, train_iters=100, lr_warmup_iters=10, lr_decay_style="WSD", lr_wsd_decay_iters=20)


@pytest.mark.parametrize(
    ("style", "r", "expected"),
    [
        ("linear", 0.0, 1.0), ("linear", 0.5, 0.5), ("linear", 1.0, 0.0),
        ("cosine", 0.0, 1.0), ("cosine", 0.5, 0.5), ("cosine", 1.0, 0.0),
        ("exponential", 0.0, 1.0), ("exponential", 0.5, 2 * 0.5**0.5 - 1), ("exponential", 1.0, 0.0),
        ("minus_sqrt", 0.0, 1.0), ("minus_sqrt", 0.5, 1 - 0.5**0.5), ("minus_sqrt", 1.0, 0.0),
    ],
)
def test_megatron_lm_wsd_decay_styles(style: str, r: float, expected: float) -> None:
    step = 80 + r * 20  # the anneal starts at 100 - 20
    assert mlm.lr_at(step, lr_wsd_decay_style=style, **WSD) == pytest.approx(expected)


def test_megatron_lm_wsd_plateau_and_min_lr() -> None:
    params = dict(WSD, min_lr=0.2, lr_wsd_decay_style="linear")
    assert mlm.lr_at(50, **params) == 1.0
    assert mlm.lr_at(80, **params) == 1.0  # still the plateau at the anneal start
    assert mlm.lr_at(90, **params) == pytest.approx(0.6)
    assert mlm.lr_at(101, **params) == 0.2


@pytest.mark.parametrize(
    ("params", "flag"),
    [
        (dict(lr=1.0, train_iters=100, min_lr=-1.0), "--min-lr"),
        (dict(lr=1.0, train_iters=100, min_lr=2.0), "--min-lr"),
        (dict(lr=1.0, train_iters=100, lr_warmup_iters=100), "--lr-decay-iters"),
        (dict(lr=1.0, train_iters=100, lr_decay_style="WSD"), "--lr-wsd-decay-iters"),
        (dict(lr=1.0, train_iters=100, lr_decay_style="cosinus"), "--lr-decay-style"),
    ],
)
def test_megatron_lm_rejects_what_megatron_asserts(params: dict, flag: str) -> None:
    with pytest.raises(UserError, match=flag):
        mlm.lr_at(50, **params)


# -- Megatron-DeepSpeed ------------------------------------------------------------------------------
def test_megatron_deepspeed_base_styles_warm_up_from_zero() -> None:
    params = dict(lr=1.0, min_lr=0.1, train_iters=110, lr_warmup_iters=10, lr_decay_style="linear")
    assert mds.lr_at(0, **params) == 0.0
    assert mds.lr_at(10, **params) == 1.0
    assert mds.lr_at(60, **params) == pytest.approx(0.55)
    assert mds.lr_at(111, **params) == 0.1
    assert mds.lr_at(60, **dict(params, lr_decay_style="cosine")) == pytest.approx(0.55)
    assert mds.lr_at(10_000, **dict(params, lr_decay_style="constant")) == 1.0


@pytest.mark.parametrize(("frac", "train_iters", "start"), [(0.2, 1000, 800), (0.05, 2000, 1900), (0.5, 300, 150)])
def test_megatron_deepspeed_constant_plus_cooldown_starts_at_t_minus_frac_t(frac: float, train_iters: int,
                                                                             start: int) -> None:
    params = dict(lr=1.0, min_lr=0.0, train_iters=train_iters, lr_decay_style="constant",
                  lr_constant_plus_cooldown=True, lr_constant_plus_cooldown_frac=frac)
    assert mds.cooldown_start(**params) == start
    assert mds.lr_at(start, **params) == 1.0
    assert mds.lr_at(start + 1, **params) < 1.0
    length = frac * train_iters
    assert mds.lr_at(start + length / 4, **params) == pytest.approx(0.5)  # 1 - sqrt(1/4)
    assert mds.lr_at(train_iters, **params) == 0.0
    assert mds.lr_at(train_iters + 50, **params) == 0.0


def test_megatron_deepspeed_cooldown_truncates_to_whole_samples_and_ends_at_lr_decay_iters() -> None:
    # 0.57 x 100 samples is 56.99999999999999 in double precision: the trainer's int() keeps 56
    params = dict(lr=1.0, train_iters=120, lr_decay_iters=100, lr_decay_style="constant",
                  lr_constant_plus_cooldown=True, lr_constant_plus_cooldown_frac=0.57)
    assert int(0.57 * 100) == 56
    assert mds.cooldown_start(**params) == 44  # 100 - 56, not 100 - 57
    assert mds.lr_at(44, **params) == 1.0
    assert mds.lr_at(45, **params) < 1.0
    assert mds.lr_at(100, **params) == 0.0  # the horizon is --lr-decay-iters, not --train-iters
    assert mds.lr_at(110, **params) == 0.0
    # with a global batch of 4: int(0.57 x 400) = 227 samples, so the decay starts a quarter iteration late
    batched = dict(params, global_batch_size=4)
    assert int(0.57 * 400) == 227
    assert mds.cooldown_start(**batched) == 43.25
    assert mds.lr_at(43, **batched) == 1.0 and mds.lr_at(44, **batched) < 1.0


def test_megatron_deepspeed_infinite_schedules_use_fractions_and_timescale_10() -> None:
    # 100 iterations: warmup 10, cooldown 0.2 x 100 = 20 iterations after warmup, plateau 0.2 x 100 = 20, then exp decay
    params = dict(lr=1.0, min_lr=0.01, train_iters=100, lr_warmup_iters=10, constant_lr=0.1,
                  lr_cooldown_fraction=0.2, lr_constant_fraction=0.2)
    cosine = dict(params, lr_decay_style="infinite-cosine")
    assert mds.lr_at(10, **cosine) == 1.0
    assert mds.lr_at(20, **cosine) == pytest.approx(0.1 + 0.9 * 0.5)
    assert mds.lr_at(30, **cosine) == pytest.approx(0.1)
    inverse = dict(params, lr_decay_style="infinite-inv-square-root")

    def shape(t: float) -> float:
        return 1 / math.sqrt(1 + 10 * t) - 1

    assert mds.lr_at(20, **inverse) == pytest.approx(1.0 - 0.9 * shape(0.5) / shape(1))
    assert mds.lr_at(30, **inverse) == pytest.approx(0.1)  # reaches --constant-lr at the end of the cooldown
    for p in (cosine, inverse):
        assert mds.lr_at(50, **p) == pytest.approx(0.1)  # plateau
        # exponential decay over 100 - 10 - 20 - 20 = 50 iterations: half way = geometric mean
        assert mds.lr_at(75, **p) == pytest.approx(math.sqrt(0.1 * 0.01))
        assert mds.lr_at(100, **p) == pytest.approx(0.01)
        assert mds.lr_at(101, **p) == 0.01


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (dict(timescale=3.0), "--timescale is parsed but training.py never passes it"),
        (dict(lr_decay_style="infinite-cosine", min_lr=0.0, constant_lr=0.5), "must be > 0"),
        (dict(lr_decay_style="infinite-cosine", min_lr=0.1, constant_lr=2.0), "--constant-lr"),
        (dict(lr_decay_style="infinite-cosine", min_lr=0.1, constant_lr=0.5, lr_decay_tokens=10**6, seq_length=8,
              lr_warmup_iters=2), "crashes the trainer"),
        (dict(lr_decay_style="constant", lr_constant_plus_cooldown=True, lr_decay_tokens=10**6, seq_length=8,
              lr_warmup_iters=2), "crashes the trainer"),
        (dict(lr_decay_tokens=10**6, seq_length=8), "give --lr-warmup-tokens"),
        (dict(lr_decay_tokens=10**6, lr_warmup_iters=2), "--seq-length"),
        (dict(train_samples=100), "--train-iters and --train-samples exclude each other"),
        (dict(lr_warmup_samples=5), "--lr-warmup-samples needs --train-samples"),
        (dict(lr_warmup_iters=5, lr_warmup_fraction=0.1), "only specify one of --lr-warmup-fraction"),
    ],
)
def test_megatron_deepspeed_refuses_what_the_trainer_refuses_or_crashes_on(params: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        mds.lr_at(5, **dict(dict(lr=1.0, train_iters=10), **params))


def test_megatron_deepspeed_zero_cooldown_frac_drops_to_min_lr_at_the_horizon() -> None:
    params = dict(lr=1.0, min_lr=0.1, train_iters=10, lr_decay_style="constant", lr_constant_plus_cooldown=True,
                  lr_constant_plus_cooldown_frac=0.0)
    assert [mds.lr_at(step, **params) for step in (9, 10)] == [1.0, 0.1]


# -- schedules-and-scaling ---------------------------------------------------------------------------
SAS = dict(lr=1.0, iterations=1000, warmup_steps=100, wsd_fract_decay=0.2)


def test_schedules_and_scaling_warmup_plateau_and_end() -> None:
    assert sas.lr_at(0, **SAS) == pytest.approx(0.01)  # lr / 100
    assert sas.lr_at(50, **SAS) == pytest.approx(0.5 + 0.5 / 100)
    assert sas.lr_at(100, **SAS) == 1.0  # t = W is on the plateau
    assert sas.lr_at(800, **SAS) == 1.0  # H = 1000 - 200: r = 0
    assert sas.lr_at(1000, **SAS) == 0.0
    assert sas.lr_at(5000, **dict(SAS, wsd_final_lr_scale=0.1)) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("decay_type", "half_way"),
    [
        ("linear", 0.1 + 0.9 * 0.5),
        ("cosine", 0.1 + 0.9 * 0.5),
        ("exp", 0.1**0.5),
        ("miror_cosine", 2 * (0.1 + 0.9 * 0.5) - (0.1 + 0.9 * 0.5)),
        ("square", 0.1 + 0.9 * 0.75),
        ("sqrt", 0.1 + 0.9 * (1 - 0.5**0.5)),
    ],
)
def test_schedules_and_scaling_decay_types(decay_type: str, half_way: float) -> None:
    params = dict(SAS, wsd_final_lr_scale=0.1, decay_type=decay_type)
    assert sas.lr_at(800, **params) == pytest.approx(1.0)
    assert sas.lr_at(900, **params) == pytest.approx(half_way)
    assert sas.lr_at(999.999999, **params) == pytest.approx(0.1, abs=1e-4)


def test_schedules_and_scaling_exp_to_zero_and_truncated_decay_length() -> None:
    params = dict(lr=2.0, iterations=1000, warmup_steps=0, wsd_fract_decay=0.2, decay_type="exp")
    assert sas.lr_at(800, **params) == 2.0  # 0 ** 0 = 1
    assert sas.lr_at(801, **params) == 0.0
    # D = int(0.15 * 999) = 149: the decay starts at 850
    assert sas.decay_start(999, 0.15) == 850


def test_curve_is_lr_at_on_every_step() -> None:
    points = mlm.curve(range(0, 111, 10), lr_decay_style="linear", **BASE)
    assert [step for step, _ in points] == list(range(0, 111, 10))
    assert points[6][1] == pytest.approx(0.55)


# -- CLI: orch lr schedule ---------------------------------------------------------------------------
from orchestrator.cli import main  # noqa: E402

MDS_FLAGS = ["--framework", "megatron-deepspeed", "--lr", "1.0", "--min-lr", "0", "--train-iters", "1000",
             "--lr-decay-style", "constant", "--lr_constant_plus_cooldown", "--lr_constant_plus_cooldown_frac", "0.2"]


def test_cli_at_prints_one_value(capsys: pytest.CaptureFixture) -> None:
    assert main(["lr", "schedule", *MDS_FLAGS, "--at", "850"]) == 0
    assert float(capsys.readouterr().out) == pytest.approx(0.5)  # r = 50 / 200: 1 - sqrt(1/4)


def test_cli_csv_and_plot(tmp_path, capsys: pytest.CaptureFixture) -> None:
    plot = tmp_path / "curve.png"
    assert main(["lr", "schedule", *MDS_FLAGS, "--csv", "--every", "100", "--plot", str(plot)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "step,lr"
    rows = [line.split(",") for line in lines[1:]]
    assert [int(step) for step, _ in rows] == list(range(0, 1001, 100))
    assert float(rows[8][1]) == 1.0 and float(rows[9][1]) == pytest.approx(1 - 0.5**0.5) and float(rows[10][1]) == 0.0
    assert plot.stat().st_size > 1000


def test_cli_rejects_foreign_and_missing_flags(capsys: pytest.CaptureFixture) -> None:
    assert main(["lr", "schedule", "--framework", "megatron-lm", "--lr", "1", "--train-iters", "10",
                 "--wsd-fract-decay", "0.1", "--at", "1"]) == 2
    assert "megatron-lm has no flag --wsd-fract-decay" in capsys.readouterr().err
    assert main(["lr", "schedule", "--framework", "schedules-and-scaling", "--lr", "1", "--at", "1"]) == 2
    assert "needs --iterations" in capsys.readouterr().err
    assert main(["lr", "schedule", "--framework", "megatron-lm", "--lr", "1", "--train-iters", "10",
                 "--lr-decay-style", "WSD", "--at", "1"]) == 2
    assert "--lr-wsd-decay-iters" in capsys.readouterr().err
