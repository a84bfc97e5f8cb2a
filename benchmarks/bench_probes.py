"""Start conditions at campaign scale, and the start-up time of the command helpers call.

1. One probe round: 1,000 waiting jobs whose `start_condition_cmd` takes 1 s (`sleep 1; echo 1`, a real
   shell each). Measured: wall time from the monitor's start until every job was told "go" and submitted,
   against the 1,000 s the same probes take one after another (AutoExperiment runs them in threads
   without a bound; orch's first version ran them in turn). Goal: under 90 s with the default 16 workers.
2. While that round runs: the monitor's own CPU time and allocation peak per cycle.
3. `orch ckpt pending RUN_DIR` (what convert/eval start conditions run): wall time per call, against a
   bare `python -c pass`. Goal: under 100 ms.

The scheduler is an in-memory stand-in that accepts every submission (the scheduler's own cost is
measured by bench_monitor.py); everything else is the real monitor, store, probe runner and shells.

Run: .venv/bin/python benchmarks/bench_probes.py
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Collection, Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.jobs import Job  # noqa: E402
from orchestrator.monitor.loop import Monitor, MonitorOptions  # noqa: E402
from orchestrator.scheduler.base import Observation, SchedulerState  # noqa: E402
from orchestrator.state import StateStore  # noqa: E402

JOBS = 1000
PROBE = "sleep 1; echo 1"


class AcceptingScheduler:
    name = "in-memory"

    def __init__(self) -> None:
        self.queue: dict[str, Observation] = {}

    def submit(self, job: Job) -> str:
        job_id = str(len(self.queue) + 1)
        self.queue[job_id] = Observation(job_id, job.name, SchedulerState.PENDING, script=job.sbatch_script)
        return job_id

    def query(self, scheduler_ids: Collection[str], names: Collection[str]) -> Mapping[str, Observation]:
        return {i: self.queue[i] for i in scheduler_ids if i in self.queue}

    def cancel(self, scheduler_ids: Collection[str]) -> None:
        pass


def probe_round() -> None:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        jobs = [Job(name=f"wait{i}", template="t", sbatch_script=str(root / f"{i}.sbatch"),
                    output_file=str(root / f"{i}.out"), cmd="sbatch", check_interval_secs=600,
                    start_condition_cmd=PROBE) for i in range(JOBS)]
        scheduler = AcceptingScheduler()
        store = StateStore.open(root)
        monitor = Monitor(jobs, scheduler, store, MonitorOptions(poll_secs=1.0))
        monitor.start()
        started = time.perf_counter()
        cycles, cpu, peak = 0, [], 0
        try:
            while len(scheduler.queue) < JOBS:
                # Allocation on every 4th cycle only: tracemalloc slows Python several times over.
                traced = cycles % 4 == 3
                if traced:
                    tracemalloc.start()
                before = time.process_time()
                monitor.cycle()
                if traced:
                    peak = max(peak, tracemalloc.get_traced_memory()[1])
                    tracemalloc.stop()
                else:
                    cpu.append(time.process_time() - before)
                cycles += 1
                time.sleep(1.0)
        finally:
            monitor.close()
            store.close()
        elapsed = time.perf_counter() - started
    print(f"probe round: {JOBS} start conditions of 1 s, 16 workers: all submitted after {elapsed:.1f} s "
          f"({cycles} cycles; one after another: {JOBS} s; goal < 90 s)")
    print(f"monitor per cycle with {JOBS} jobs and probes in flight: CPU median {1000 * statistics.median(cpu):.1f} ms, "
          f"max {1000 * max(cpu):.1f} ms (the probe threads' own work included); allocation peak "
          f"{peak / 2**20:.2f} MiB; max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def helper_startup() -> None:
    orch = Path(sys.executable).with_name("orch")
    with tempfile.TemporaryDirectory() as run_dir:
        def timed(argv: list[str], runs: int = 20) -> float:
            subprocess.run(argv, capture_output=True, check=True)  # warm the page cache
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                subprocess.run(argv, capture_output=True, check=True)
                times.append(time.perf_counter() - start)
            return 1000 * statistics.median(times)

        baseline = timed([sys.executable, "-c", "pass"])
        pending = timed([str(orch), "ckpt", "pending", run_dir])
        link_help = timed([str(orch), "cooldown", "link", "--help"])
    print(f"helper start-up (median of 20): `orch ckpt pending` {pending:.0f} ms, `orch cooldown link --help` "
          f"{link_help:.0f} ms; bare `python -c pass` {baseline:.0f} ms (goal < 100 ms)")


def main() -> int:
    helper_startup()
    probe_round()
    return 0


if __name__ == "__main__":
    sys.exit(main())
