"""Cost and provenance on real local campaigns: the confirmation, the budget guard, the ledger, provenance,
`orch plan --diff`, and the status table at 80 columns."""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import pytest
from rich.console import Console

from monitor_campaign import campaign_state, run_orch, status, write_campaign
from orchestrator.cli.run import confirm_cost
from orchestrator.cli.status import status_table
from orchestrator.config import load_jobs
from orchestrator.errors import UserError
from orchestrator.monitor.loop import Monitor, MonitorOptions
from orchestrator.scheduler.local import LocalScheduler
from orchestrator.state import StateStore

STEPS = """
echo "[after training is done] datetime: soon"
sleep 1
echo "TRAINING DONE"
"""


def gpu_campaign(root: Path, gpus: int = 4, hours: str = "10:00:00", grid: str = "idx: [0, 1]") -> str:
    prefix = write_campaign(root, STEPS, grid=grid, cmd="sbatch {sbatch_script}")
    template = root / "job.sbatch"
    text = template.read_text().replace("#SBATCH --time=00:03:00\n", f"#SBATCH --time={hours}\n#SBATCH --gpus={gpus}\n")
    template.write_text(text)
    return prefix


def run_args(**overrides: object) -> argparse.Namespace:
    return argparse.Namespace(**{"yes": False, "confirm_above": 100.0, "config": "campaign.yaml", **overrides})


def test_confirmation_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    gpu_campaign(tmp_path)  # 2 jobs x 4 GPUs x 10 h = 80 GPU-hours
    monkeypatch.chdir(tmp_path)
    assert run_orch(tmp_path, "build", "campaign.yaml").returncode == 0
    jobs = load_jobs("campaign.yaml")
    confirm_cost(jobs, run_args())  # below the threshold: no question
    assert "up to 80.0 GPU-hours" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    with pytest.raises(UserError, match="no terminal to ask: run with --yes"):
        confirm_cost(jobs, run_args(confirm_above=50))
    confirm_cost(jobs, run_args(confirm_above=50, yes=True))
    terminal = io.StringIO("n\n")
    terminal.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr("sys.stdin", terminal)
    with pytest.raises(UserError, match="not confirmed"):
        confirm_cost(jobs, run_args(confirm_above=50))
    terminal = io.StringIO("y\n")
    terminal.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr("sys.stdin", terminal)
    confirm_cost(jobs, run_args(confirm_above=50))
    # Through the CLI, without a terminal: refused with exit 2 and nothing submitted.
    refused = run_orch(tmp_path, "run", "campaign.yaml", "--scheduler", "local", "--confirm-above", "50")
    assert refused.returncode == 2 and "--yes" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / ".orch" / "local").exists()


def test_budget_holds_what_does_not_fit_and_the_ledger_has_true_times(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = gpu_campaign(tmp_path)  # each job may take 40 GPU-hours
    monkeypatch.chdir(tmp_path)
    assert run_orch(tmp_path, "build", "campaign.yaml").returncode == 0
    jobs = load_jobs("campaign.yaml")
    store = StateStore.open(campaign_state(Path(".")))
    monitor = Monitor(jobs, LocalScheduler(), store, MonitorOptions(poll_secs=0.2, budget_gpu_hours=60))
    monitor.start()
    held = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not store.attempts(f"{prefix}_1"):
        monitor.cycle()
        second = store.job(f"{prefix}_1")
        if held is None and second.reason.startswith("budget:"):
            held = second
        time.sleep(0.3)
    monitor.close()
    # Job 1 (40 GPU-hours) did not fit beside job 0's reserved 40 under a budget of 60: it waited, said once ...
    assert held is not None and held.state.value == "waiting" and held.attempts == 0
    assert len(store.events(f"{prefix}_1", "budget")) == 1
    # ... and went once job 0 had ended: what counts then is what job 0 really spent, seconds.
    first_attempt, second_attempt = store.attempts(f"{prefix}_0")[0], store.attempts(f"{prefix}_1")[0]
    assert first_attempt.ended_at is not None and second_attempt.intent_at >= first_attempt.ended_at
    attempt = store.attempts(f"{prefix}_0")[0]
    # The job ran ~1 s between two polls; its time comes from the local wrapper's own clock.
    assert attempt.elapsed_secs is not None and 0.9 <= attempt.elapsed_secs < 10
    assert (attempt.estimate_gpus, attempt.estimate_hours) == (4, 10.0)
    store.close()
    rows = status(tmp_path)
    row = rows[f"{prefix}_0"]
    assert row["runtime_secs"] >= 0.9 and row["gpu_hours_spent"] == pytest.approx(4 * attempt.elapsed_secs / 3600, abs=1e-4)
    assert row["state"] == "done" and row["gpu_hours_remaining"] == 0


def test_unbounded_jobs_are_not_submitted_under_a_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = gpu_campaign(tmp_path, grid="idx: [0]")
    template = tmp_path / "job.sbatch"
    template.write_text(template.read_text().replace("#SBATCH --time=10:00:00\n", ""))
    monkeypatch.chdir(tmp_path)
    assert run_orch(tmp_path, "build", "campaign.yaml").returncode == 0
    store = StateStore.open(campaign_state(Path(".")))
    monitor = Monitor(load_jobs("campaign.yaml"), LocalScheduler(), store, MonitorOptions(poll_secs=0.2, budget_gpu_hours=1e6))
    monitor.start()
    monitor.cycle()
    monitor.close()
    assert "unbounded" in store.job(f"{prefix}_0").reason and store.attempts() == []
    store.close()


def test_provenance_and_history(tmp_path: Path) -> None:
    prefix = write_campaign(tmp_path, STEPS, cmd="sbatch {sbatch_script}")
    done = run_orch(tmp_path, "build-and-run", "campaign.yaml", "--scheduler", "local", "--poll-secs", "0.3",
                    "-f", "extra=1e-3", "idx=0")
    assert done.returncode == 0, done.stdout + done.stderr
    history = run_orch(tmp_path, "status", "campaign.yaml", "--history", f"{prefix}_0", "-f", "extra=1e-3")
    assert history.returncode == 0
    text = history.stdout
    assert f"{prefix}_0: 1 attempt(s)" in text and "COMPLETED" in text
    assert f"config_path: {tmp_path / 'campaign.yaml'}" in text
    assert "fixes: ['extra=1e-3']" in text and "filters: ['idx=0']" in text and "orch_version:" in text
    digest = next(line.split(": ")[1] for line in text.splitlines() if "script_sha256" in line)
    kept = campaign_state(tmp_path) / "scripts" / f"{digest}.sbatch"
    assert kept.read_bytes() == (tmp_path / "scripts" / f"{prefix}_0.sbatch").read_bytes()


def test_plan_diff(tmp_path: Path) -> None:
    prefix = write_campaign(tmp_path, STEPS, grid="idx: [0, 1, 2]", cmd="sbatch {sbatch_script}")
    nothing = run_orch(tmp_path, "plan", "campaign.yaml", "--diff")
    assert nothing.returncode == 2 and "orch build" in nothing.stderr
    assert run_orch(tmp_path, "build", "campaign.yaml").returncode == 0
    same = run_orch(tmp_path, "plan", "campaign.yaml", "--diff")
    assert "3 of 3 jobs unchanged" in same.stdout and "new jobs: 0" in same.stdout
    config = tmp_path / "campaign.yaml"
    config.write_text(config.read_text().replace("idx: [0, 1, 2]", "idx: [1, 2, 3]\nwarmup: \"{idx}\""))
    (tmp_path / "job.sbatch").write_text((tmp_path / "job.sbatch").read_text().replace(
        "#SBATCH --ntasks=1", "#SBATCH --ntasks=1\n#SBATCH --comment={warmup}"))
    # A running submission of job 2 was made with the old script.
    store = StateStore.open(campaign_state(tmp_path))
    store.ensure_jobs([f"{prefix}_2"])
    store.record_submitted(store.record_intent(f"{prefix}_2", provenance={"script_sha256": "0" * 64}), "77")
    store.close()
    diff = run_orch(tmp_path, "plan", "campaign.yaml", "--diff").stdout
    assert f"new jobs: 1\n  {prefix}_3" in diff
    assert f"removed jobs: 1\n  {prefix}_0" in diff
    assert f"changed scripts: 2\n  {prefix}_1\n  {prefix}_2" in diff
    assert f"running with an older script (left to finish; not resubmitted for it): 1\n  {prefix}_2" in diff
    shown = run_orch(tmp_path, "plan", "campaign.yaml", "--diff", "--show", f"{prefix}_1").stdout
    assert "+#SBATCH --comment=1" in shown and shown.startswith("---")


def test_monitor_warns_once_when_a_running_jobs_script_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = write_campaign(tmp_path, STEPS, cmd="sbatch {sbatch_script}")
    monkeypatch.chdir(tmp_path)
    assert run_orch(tmp_path, "build", "campaign.yaml").returncode == 0
    store = StateStore.open(campaign_state(Path(".")))
    store.ensure_jobs([f"{prefix}_0"])
    store.record_submitted(store.record_intent(f"{prefix}_0", provenance={"script_sha256": "0" * 64}), "99999")
    monitor = Monitor(load_jobs("campaign.yaml"), LocalScheduler(), store, MonitorOptions(poll_secs=1))
    monitor.start()
    monitor.start()
    monitor.close()
    assert len(store.events(f"{prefix}_0", "script-changed")) == 1
    store.close()


def test_status_table_keeps_the_id_at_80_columns_and_shows_markup_as_text() -> None:
    rows = [{"name": "quickstart_h128_lr0.01_cooldown_400_convert_eval", "state": "running", "scheduler_id": "1234567",
             "attempts": 2, "runtime_secs": 354.0, "gpu_hours_spent": 1.5,
             "last_line": "[after training is done] datetime: 2026-11-23 [bold]x[/bold]"}]
    console = Console(width=80, record=True, force_terminal=False)
    console.print(status_table("t", rows, 80))
    text = console.export_text()
    assert "1234567" in text
    assert max(len(line) for line in text.splitlines()) <= 80
    joined = "".join(line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│"))
    assert joined.startswith("quickstart_h128_lr0.01_cooldown_400_convert_eval")  # wrapped, never cut
    wide = Console(width=200, record=True, force_terminal=False)
    wide.print(status_table("t", rows, 200))
    assert "[after training is done] datetime: 2026-11-23 [bold]x[/bold]" in wide.export_text()  # text, not markup


def test_status_json_totals(tmp_path: Path) -> None:
    write_campaign(tmp_path, STEPS, grid="idx: [0, 1]", cmd="sbatch {sbatch_script}")
    assert run_orch(tmp_path, "build-and-run", "campaign.yaml", "--scheduler", "local", "--poll-secs", "0.3").returncode == 0
    payload = json.loads(run_orch(tmp_path, "status", "campaign.yaml", "--json").stdout)
    assert payload["totals"]["jobs"] == 2 and payload["totals"]["states"] == {"done": 2}
    assert all(row["runtime_secs"] >= 0.9 for row in payload["jobs"])  # was 0 before the ledger


def test_status_watch_redraws_until_interrupted(tmp_path: Path) -> None:
    import os
    import pty
    import select
    import signal
    import subprocess

    from monitor_campaign import orch_command

    write_campaign(tmp_path, STEPS, grid="idx: [0, 1]", cmd="sbatch {sbatch_script}")
    master, slave = pty.openpty()  # a terminal: rich redraws in place only there
    watcher = subprocess.Popen(orch_command("status", "campaign.yaml", "--watch", "--interval", "0.2"), cwd=tmp_path,
                               stdin=slave, stdout=slave, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "COLUMNS": "80", "LINES": "40", "TERM": "xterm"},
                               # A run started in the background inherits SIGINT ignored; a terminal's Ctrl-C is not.
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        if not select.select([master], [], [], 0.5)[0]:
            continue
        try:
            chunks.append(os.read(master, 65536).decode(errors="replace"))
        except OSError:
            break
        if "".join(chunks).count("2 jobs: 2 waiting") >= 3:
            break
    watcher.send_signal(signal.SIGINT)
    # Keep reading the terminal while it winds down: its last redraw must not block on a full pty buffer.
    deadline = time.monotonic() + 30
    while watcher.poll() is None and time.monotonic() < deadline:
        if select.select([master], [], [], 0.2)[0]:
            try:
                os.read(master, 65536)  # read and dropped: only what was drawn before the interrupt counts below
            except OSError:
                break
    _, err = watcher.communicate(timeout=30)
    os.close(master)
    assert watcher.returncode == 0, err
    assert "".join(chunks).count("2 jobs: 2 waiting") >= 3  # drawn again and again
    assert "Traceback" not in err


def test_a_job_done_while_still_running_keeps_its_time_so_far(tmp_path: Path) -> None:
    """termination_str printed, then the job runs on past the monitor's end: the attempt stays open (the
    scheduler still has it), with the time it had run when the monitor saw it done."""
    prefix = write_campaign(tmp_path, 'sleep 1\necho "TRAINING DONE"\nsleep 4\n', cmd="sbatch {sbatch_script}")
    done = run_orch(tmp_path, "build-and-run", "campaign.yaml", "--scheduler", "local", "--poll-secs", "0.3")
    assert done.returncode == 0, done.stdout + done.stderr
    store = StateStore.open(campaign_state(tmp_path))
    attempt = store.attempts(f"{prefix}_0")[0]
    store.close()
    assert attempt.ended_at is None  # still winding down when the monitor stopped
    assert attempt.elapsed_secs is not None and 0.9 <= attempt.elapsed_secs < 4
