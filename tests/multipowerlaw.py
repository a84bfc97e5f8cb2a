"""The Multi-Power Law authors' curves (tests/fixtures/multipowerlaw) as `orch predict` inputs.

Schedules rebuilt as thu-yao-01-luo/MultiPowerLaw @8da9f19 builds them (`src/lr_schedules.py`, `src/data_loader.py`):
2,160 warmup steps from 0 to 3e-4 (np.linspace), then per curve: constant; cosine to 3e-5; two-stage (3e-4 until
8,000, then N x 1e-5, 16,000 steps: `wsdcon_N`); WSD from 20,000 with an exponential decay to 3e-5 (`wsd`) or a
linear one (`wsdld`). Curves of 24,000 steps drop their step-24,000 point, as the authors' loader does.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "fixtures" / "multipowerlaw"
TRAIN = ("cosine_24000", "constant_24000", "wsdcon_9")
TEST = ("constant_72000", "cosine_72000", "wsd_20000_24000", "wsdld_20000_24000", "wsdcon_3", "wsdcon_18")
PUBLISHED = {"25": (0.00110, 0.00409), "100": (0.00142, 0.00583), "400": (0.00168, 0.00995)}  # PredE, WorstE
WARMUP, PEAK, END = 2160, 3e-4, 3e-5


def schedule(name: str) -> np.ndarray:
    warmup = np.linspace(0, PEAK, WARMUP)
    kind, *numbers = name.split("_")
    if kind == "constant":
        return np.concatenate((warmup, np.full(int(numbers[0]) - WARMUP, PEAK)))
    if kind == "cosine":
        total = int(numbers[0])
        step = np.arange(total)[WARMUP:]
        return np.concatenate((warmup, END + 0.5 * (PEAK - END) * (1 + np.cos(np.pi * (step - WARMUP) / (total - WARMUP)))))
    if kind == "wsdcon":
        return np.concatenate((warmup, np.full(8000 - WARMUP, PEAK), np.full(16000 - 8000, int(numbers[0]) * 1e-5)))
    decay, total = 20000, 24000
    step = np.arange(total)[decay:]
    if kind == "wsd":
        tail = PEAK ** ((total - step) / (total - decay)) * END ** ((step - decay) / (total - decay))
    else:  # wsdld
        tail = PEAK * (1 - (step - decay) / (total - decay)) + END * (step - decay) / (total - decay)
    return np.concatenate((warmup, np.full(decay - WARMUP, PEAK), tail))


def observed(size: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    data = np.genfromtxt(DATA / f"csv_{size}" / f"{name}.csv", delimiter=",", skip_header=1)
    step, loss = data[:, 0].astype(int), data[:, 2]
    keep = step < 24000 if step.max() == 24000 else np.ones(len(step), bool)
    return step[keep], loss[keep]


def write_inputs(size: str, folder: Path) -> tuple[Path, Path, Path]:
    """S.csv (every curve's schedule), O.csv (the training curves' losses), A.csv (the test curves' observed steps)."""
    schedules, observations, targets = folder / "S.csv", folder / "O.csv", folder / "A.csv"
    with open(schedules, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["curve", "step", "lr"])
        for name in TRAIN + TEST:
            writer.writerows((name, step, repr(float(lr))) for step, lr in enumerate(schedule(name)))
    with open(observations, "w", newline="") as out_o, open(targets, "w", newline="") as out_a:
        o, a = csv.writer(out_o), csv.writer(out_a)
        o.writerow(["curve", "step", "loss"])
        a.writerow(["curve", "step"])
        for name in TRAIN:
            o.writerows((name, step, loss) for step, loss in zip(*observed(size, name)))
        for name in TEST:
            a.writerows((name, step) for step in observed(size, name)[0])
    return schedules, observations, targets
