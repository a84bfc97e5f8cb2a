"""Alerts from the config's `notify` section, checked against a real HTTP server on 127.0.0.1, and the heartbeat."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from monitor_campaign import campaign_state, run_orch, write_campaign
from orchestrator.errors import UserError
from orchestrator.jobs import Job
from orchestrator.monitor.alerts import settings_from
from orchestrator.scheduler.slurm import submit_command

pytestmark = pytest.mark.slow


@pytest.fixture()
def webhook():
    """A local HTTP server collecting the JSON bodies POSTed to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()
    server.server_close()


def test_a_crash_loop_and_the_campaign_done_reach_the_webhook_and_the_command(tmp_path, webhook):
    url, received = webhook
    prefix = write_campaign(tmp_path, """
        if [ "{kind}" = crash ]; then echo "boom"; exit 3; fi
        echo "TRAINING DONE"
        """, grid="kind: [ok, crash]", name="{prefix}_{kind}",
        extra=f"max_failures: 2\nnotify:\n  webhook: {url}\n  command: 'echo \"$ORCH_ALERT_KIND $ORCH_ALERT_JOB\" >> alerts.txt'\n")
    result = run_orch(tmp_path, "build-and-run", "campaign.yaml", "--scheduler", "local", "--poll-secs", "0.3")
    assert result.returncode == 1, result.stdout + result.stderr
    kinds = [(body["kind"], body["job"]) for body in received]
    assert ("gave-up", f"{prefix}_crash") in kinds and ("done", None) in kinds
    gave_up = next(body for body in received if body["kind"] == "gave-up")
    assert "2 failed attempts in a row" in gave_up["message"] and gave_up["campaign"] == "campaign.yaml"
    assert f"gave-up {prefix}_crash" in (tmp_path / "alerts.txt").read_text()
    heartbeat = json.loads((campaign_state(tmp_path) / "heartbeat.json").read_text())
    assert heartbeat["states"] == {"done": 1, "failed": 1} and heartbeat["pid"] > 0
    # A tick of the finished campaign does not say "done" again.
    count = len(received)
    assert run_orch(tmp_path, "run", "campaign.yaml", "--once", "--scheduler", "local").returncode == 1
    assert len(received) == count


def test_no_progress_is_alerted_once(tmp_path, webhook):
    url, received = webhook
    write_campaign(tmp_path, "sleep 6; echo 'TRAINING DONE'\n",
                   extra=f"freeze_secs: 600\nnotify:\n  webhook: {url}\n  no_progress_secs: 2\n")
    result = run_orch(tmp_path, "build-and-run", "campaign.yaml", "--scheduler", "local", "--poll-secs", "0.5")
    assert result.returncode == 0, result.stdout + result.stderr
    stalls = [body for body in received if body["kind"] == "no-progress"]
    assert len(stalls) == 1 and "no job changed state or output for" in stalls[0]["message"]


def test_bad_notify_sections_are_refused_in_one_line():
    with pytest.raises(UserError, match="notify: unknown key"):
        settings_from({"notify": {"webhok": "http://x"}})
    with pytest.raises(UserError, match="must be an http"):
        settings_from({"notify": {"webhook": "ftp://x"}})
    assert settings_from({}).sends is False


def test_slurm_mail_passes_through_sbatch_s_environment():
    job = Job("j", "t", "j.sbatch", "j.out", "sbatch {sbatch_script}",
              {"notify": {"mail_type": "END,FAIL", "mail_user": "me@example.org"}})
    assert submit_command(job) == "export SBATCH_MAIL_TYPE=END,FAIL; export SBATCH_MAIL_USER=me@example.org; sbatch j.sbatch"
    assert submit_command(Job("j", "t", "j.sbatch", "j.out", "sbatch {sbatch_script}", {})) == "sbatch j.sbatch"
