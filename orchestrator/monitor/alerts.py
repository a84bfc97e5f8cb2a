"""Alerts: tell someone when the campaign needs them, from the config's `notify` section.

    notify:
      webhook: https://hooks.example.org/T000/B000      # POSTed a JSON body (below)
      command: 'printf "%s\n" "$ORCH_ALERT_MESSAGE" | mail -s "orch $ORCH_ALERT_KIND" me@example.org'
      no_progress_secs: 21600                            # alert when nothing moved for this long (once)
      mail_type: END,FAIL                                # Slurm's own mail for every job (SBATCH_MAIL_TYPE)
      mail_user: me@example.org                          # (SBATCH_MAIL_USER)

Kinds: `gave-up` (a job failed after max_failures attempts in a row, a crash loop, or was abandoned),
`budget` (a job held by --budget), `done` (the campaign finished), `no-progress`, `fenced` (the monitor lost its
lease). The JSON body: {"campaign", "kind", "job", "message", "time", "host"}. An alert that cannot be sent is
logged once; it never stops the monitor.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import UserError
from orchestrator.jobs import Job
from orchestrator.process import CommandTimeout, run_command

NOTIFY_KEY = "notify"
SEND_TIMEOUT_SECS = 10.0
# The monitor's log kinds sent as alerts of the same name as they are logged; `done` and `no-progress` are sent
# by the monitor itself, once for each campaign end and each stall.
LOGGED_ALERTS: frozenset[str] = frozenset({"gave-up", "budget", "fenced"})
_KEYS = ("webhook", "command", "no_progress_secs", "mail_type", "mail_user")


@dataclass(frozen=True)
class AlertSettings:
    webhook: str = ""
    command: str = ""
    no_progress_secs: float | None = None
    mail_type: str = ""
    mail_user: str = ""

    @property
    def sends(self) -> bool:
        return bool(self.webhook or self.command)


def settings_from(params: Mapping[str, Any]) -> AlertSettings:
    """The `notify` section of a job's values; a one-line error for a key or value it does not know."""
    section = params.get(NOTIFY_KEY)
    if section in (None, ""):
        return AlertSettings()
    if not isinstance(section, Mapping):
        raise UserError(f"key 'notify' must be a mapping of {', '.join(_KEYS)}, got {section!r}")
    unknown = sorted(set(map(str, section)) - set(_KEYS))
    if unknown:
        raise UserError(f"notify: unknown key(s) {', '.join(unknown)}; known: {', '.join(_KEYS)}")
    webhook = str(section.get("webhook") or "")
    if webhook and not webhook.startswith(("http://", "https://")):
        raise UserError(f"notify.webhook must be an http(s) URL, got {webhook!r}")
    secs = section.get("no_progress_secs")
    try:
        no_progress = float(secs) if secs not in (None, "") else None
    except (TypeError, ValueError):
        raise UserError(f"notify.no_progress_secs must be a number of seconds, got {secs!r}") from None
    return AlertSettings(webhook, str(section.get("command") or ""), no_progress, str(section.get("mail_type") or ""),
                         str(section.get("mail_user") or ""))


def campaign_settings(jobs: Sequence[Job]) -> AlertSettings:
    return settings_from(jobs[0].params) if jobs else AlertSettings()


class Alerts:
    def __init__(self, settings: AlertSettings, campaign: str) -> None:
        self.settings = settings
        self.campaign = campaign

    def send(self, kind: str, job: str | None, message: str) -> str:
        """Send one alert everywhere configured; returns why a channel failed ("" when all worked)."""
        body = {"campaign": self.campaign, "kind": kind, "job": job, "message": message, "time": time.time(),
                "host": socket.gethostname()}
        problems = []
        if self.settings.webhook:
            try:
                request = urllib.request.Request(self.settings.webhook, data=json.dumps(body).encode(),
                                                 headers={"Content-Type": "application/json"}, method="POST")
                with urllib.request.urlopen(request, timeout=SEND_TIMEOUT_SECS) as response:
                    response.read()
            except (OSError, ValueError) as error:
                problems.append(f"webhook: {error}")
        if self.settings.command:
            env = {**os.environ, "ORCH_ALERT_KIND": kind, "ORCH_ALERT_JOB": job or "", "ORCH_ALERT_MESSAGE": message,
                   "ORCH_ALERT_CAMPAIGN": self.campaign, "ORCH_ALERT_JSON": json.dumps(body)}
            try:
                result = run_command(self.settings.command, SEND_TIMEOUT_SECS, env=env)
                if result.returncode:
                    problems.append(f"command exit {result.returncode}")
            except (OSError, CommandTimeout) as error:
                problems.append(f"command: {error or 'timed out'}")
        return "; ".join(problems)
