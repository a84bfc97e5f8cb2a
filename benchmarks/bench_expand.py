"""Expansion speed: a 100,000-job grid (5 axes x 10 values, 3 expr() values per job).

Prints the wall time of `orch plan` (table to /dev/null) and `orch build` on that grid, next to the
time plain Python needs merely to write 100,000 such script files. Goals (issue 2): plan <= 2 s,
build <= 2x the plain writes, on this 2-core machine. Run: `.venv/bin/python benchmarks/bench_expand.py`.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROUNDS = 3
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


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


PLAIN_WRITES = """
import sys
from pathlib import Path
target, count, size = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
target.mkdir()
payload = b"x" * size
for index in range(count):
    with open(target / f"job_{index:06d}.sbatch", "wb") as file:
        file.write(payload)
"""


def plain_writes(directory: Path, count: int, size: int) -> tuple[float, float]:
    """The floor: a Python process that writes `count` files of `size` bytes into one folder, nothing else."""
    return timed([sys.executable, "-c", PLAIN_WRITES, str(directory / "plain"), str(count), str(size)], directory)


def main() -> None:
    orch = str(Path(sys.executable).with_name("orch"))
    # In memory (tmpfs) where there is one: on this machine's virtual disk the same 100,000 creations take from
    # 7 to 21 s from one minute to the next, which drowns orch's own share; ORCH_BENCH_DIR picks another place.
    base = os.environ.get("ORCH_BENCH_DIR") or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        directory = Path(tmp)
        config = write_campaign(directory)
        jobs = VALUES ** len(AXES)
        plan = timed([orch, "plan", str(config)], directory)
        # The build and the floor are timed alternately, ROUNDS times each on a fresh folder; the best of each is
        # compared, in CPU time (user + system: what other processes on the machine do not change much) and wall.
        builds, floors = [], []
        for _ in range(ROUNDS):
            for folder in ("scripts", "logs", ".orch"):
                shutil.rmtree(directory / folder, ignore_errors=True)
            builds.append(timed([orch, "build", str(config)], directory))
            size = next((directory / "scripts").iterdir()).stat().st_size
            floors.append(plain_writes(directory, jobs, size))
            shutil.rmtree(directory / "plain")
        rebuild = timed([orch, "build", str(config)], directory)
    build_wall, build_cpu = min(b[0] for b in builds), min(b[1] for b in builds)
    floor_wall, floor_cpu = min(f[0] for f in floors), min(f[1] for f in floors)
    print(f"grid: {jobs} jobs (5 axes x {VALUES} values, 3 expr() values per job), {os.cpu_count()} cores, "
          f"files in {base or tempfile.gettempdir()}; best of {ROUNDS}, wall / CPU")
    print(f"orch plan (table to /dev/null):    {plan[0]:6.2f} s / {plan[1]:5.2f} s   (goal <= 2 s)")
    print(f"orch build (first, writes all):    {build_wall:6.2f} s / {build_cpu:5.2f} s")
    print(f"orch build (again, nothing new):   {rebuild[0]:6.2f} s / {rebuild[1]:5.2f} s")
    print(f"plain Python writing {jobs} files: {floor_wall:6.2f} s / {floor_cpu:5.2f} s")
    print(f"build/plain = {build_wall / floor_wall:.2f}x wall, {build_cpu / floor_cpu:.2f}x CPU (goal <= 2x)")


if __name__ == "__main__":
    main()
