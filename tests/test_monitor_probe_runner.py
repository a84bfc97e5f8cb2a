"""Start/termination commands: real shells, bounded in time, run concurrently without doubling up."""

from __future__ import annotations

import os
import threading
import time

from orchestrator.monitor.probe_runner import FlagResult, ProbeRunner, run_flag_command


def test_flag_commands_in_a_real_shell(tmp_path):
    assert run_flag_command("echo 1").flag
    assert not run_flag_command("echo 0").flag
    assert run_flag_command("echo checking; echo 1").flag  # the last word counts
    assert run_flag_command("test -e marker && echo 1 || echo 0", cwd=str(tmp_path)).flag is False
    (tmp_path / "marker").touch()
    assert run_flag_command("test -e marker && echo 1 || echo 0", cwd=str(tmp_path)).flag
    failed = run_flag_command("echo oops >&2; exit 3")
    assert not failed.flag and failed.error and "exit 3: oops" in failed.detail
    garbage = run_flag_command("echo yes")
    assert not garbage.flag and garbage.error and "not a number" in garbage.detail


def test_a_timed_out_probe_is_no_and_its_children_are_killed(tmp_path):
    marker = tmp_path / "child.pid"
    started = time.monotonic()
    slow = run_flag_command(f"sleep 30 & echo $! > {marker}; wait; echo 1", timeout=0.5)
    assert time.monotonic() - started < 5
    assert not slow.flag and slow.error and slow.timed_out and "timed out" in slow.detail
    child = int(marker.read_text())
    for _ in range(50):  # the whole process group got SIGKILL, not only the shell
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the probe's child survived its timeout")


def test_probes_run_concurrently_with_a_bound():
    running, peak, lock = [0], [0], threading.Lock()

    def probe(command: str, timeout: float) -> FlagResult:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.3)
        with lock:
            running[0] -= 1
        return FlagResult(command == "yes")

    runner = ProbeRunner(workers=4, probe=probe)
    started = time.monotonic()
    for index in range(12):
        assert runner.launch(("job", index), "yes" if index % 2 else "no", 10, now=1.0)
    runner.wait(10)
    elapsed = time.monotonic() - started
    assert peak[0] == 4  # the bound holds, and is used
    assert 0.85 < elapsed < 2.5  # 12 probes of 0.3 s on 4 workers: 3 rounds, not 12
    outcomes = {index: runner.take(("job", index)) for index in range(12)}
    assert all(outcomes[i].result.flag == bool(i % 2) and outcomes[i].launched_at == 1.0 for i in range(12))
    assert runner.take(("job", 0)) is None  # taken once
    runner.close()


def test_a_probe_still_running_is_not_started_twice():
    release = threading.Event()
    calls = []

    def probe(command: str, timeout: float) -> FlagResult:
        calls.append(command)
        release.wait(5)
        return FlagResult(True)

    runner = ProbeRunner(workers=2, probe=probe)
    assert runner.launch("a", "check", 10, now=0.0)
    assert not runner.launch("a", "check", 10, now=1.0) and runner.busy("a") and runner.take("a") is None
    release.set()
    runner.wait(5)
    assert runner.take("a").result.flag and len(calls) == 1
    assert runner.launch("a", "check", 10, now=2.0)  # finished and taken: may run again
    runner.wait(5)
    runner.close()


def test_a_probe_that_raises_is_a_no_not_a_dead_worker():
    def probe(command: str, timeout: float) -> FlagResult:
        raise RuntimeError("boom")

    runner = ProbeRunner(workers=1, probe=probe)
    runner.launch("a", "x", 1, now=0.0)
    runner.wait(5)
    outcome = runner.take("a")
    assert not outcome.result.flag and outcome.result.error and "boom" in outcome.result.detail
    runner.close()
