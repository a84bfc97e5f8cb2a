"""Expansion speed: a 100,000-job grid (5 axes x 10 values, 3 expr() values per job).

Prints the wall time of `orch plan` (table to /dev/null) and `orch build` on that grid, next to the
time plain Python needs merely to write 100,000 such script files. Goals (issue 2): plan <= 2 s,
build <= 2x the plain writes, on this 2-core machine. Run: `.venv/bin/python benchmarks/bench_expand.py`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AXES = {"a": "size", "b": "lr", "c": "bs", "d": "seed", "e": "warmup"}
VALUES = 10

TEMPLATE = """#!/bin/bash
#SBATCH --job-name={name}
#SBATCH --output={output_file}
#SBATCH --time=01:00:00
python train.py --size {size} --lr {lr} --batch-size {bs} --seed {seed} --warmup {warmup} \\
    --tokens {tokens} --wd {wd} --iters {iters}
"""


def write_campaign(directory: Path) -> Path:
    lines = [
        "template: template.sbatch",
        'name: "s{size}_lr{lr}_bs{bs}_seed{seed}_w{warmup}"',
        'sbatch_script: "scripts/{name}.sbatch"',
        'output_file: "logs/{name}.out"',
        'cmd: "sbatch {sbatch_script}"',
        'termination_str: "after training is done"',
        "size: [" + ", ".join(str(64 * (i + 1)) for i in range(VALUES)) + "]",
        "lr: [" + ", ".join(f"{(i + 1)}e-4" for i in range(VALUES)) + "]",
        "bs: [" + ", ".join(str(8 * (i + 1)) for i in range(VALUES)) + "]",
        "seed: [" + ", ".join(str(i) for i in range(VALUES)) + "]",
        "warmup: [" + ", ".join(str(100 * i) for i in range(VALUES)) + "]",
        'tokens: "expr({bs} * 2048)"',
        'wd: "expr(1e-4 / {lr})"',
        'iters: "expr(int(1e9 / ({bs} * 2048)))"',
    ]
    (directory / "campaign.yaml").write_text("\n".join(lines) + "\n")
    (directory / "template.sbatch").write_text(TEMPLATE)
    return directory / "campaign.yaml"


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def plain_writes(directory: Path, count: int, size: int) -> float:
    """The floor: write `count` files of `size` bytes into two directories, nothing else."""
    target = directory / "plain"
    target.mkdir()
    payload = b"x" * size
    start = time.perf_counter()
    for index in range(count):
        with open(target / f"job_{index:06d}.sbatch", "wb") as file:
            file.write(payload)
    return time.perf_counter() - start


def main() -> None:
    orch = str(Path(sys.executable).with_name("orch"))
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        config = write_campaign(directory)
        jobs = VALUES ** len(AXES)
        plan = timed([orch, "plan", str(config)], directory)
        build = timed([orch, "build", str(config)], directory)
        rebuild = timed([orch, "build", str(config)], directory)
        sample = next((directory / "scripts").iterdir())
        floor = plain_writes(directory, jobs, sample.stat().st_size)
        shutil.rmtree(directory / "plain")
    print(f"grid: {jobs} jobs (5 axes x {VALUES} values, 3 expr() values per job), {os.cpu_count()} cores")
    print(f"orch plan (table to /dev/null):    {plan:6.2f} s   (goal <= 2 s)")
    print(f"orch build (first, writes all):    {build:6.2f} s")
    print(f"orch build (again, nothing new):   {rebuild:6.2f} s")
    print(f"plain Python writing {jobs} files: {floor:6.2f} s   build/plain = {build / floor:.2f}x (goal <= 2x)")


if __name__ == "__main__":
    main()
