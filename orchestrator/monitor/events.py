"""The monitor's voice: log lines, the store's event log, alerts, and the heartbeat file."""

from __future__ import annotations

import logging
import time
from collections import Counter

from orchestrator.monitor.alerts import LOGGED_ALERTS, Alerts
from orchestrator.monitor.heartbeat import write_heartbeat
from orchestrator.state.store import JobRecord, StateStore

LOGGER = logging.getLogger("orch.monitor")


class EventLog:
    """What the monitor says, where it says it: the log, the store's events, and the alert channels."""

    store: StateStore
    _alerts: Alerts | None
    _logged_once: set[tuple[str, str]]
    fenced: bool

    def _log_once(self, job: str | None, key: str, kind: str, message: str) -> None:
        if (job or "", key) not in self._logged_once:
            self._logged_once.add((job or "", key))
            self._log(job, kind, message, logging.WARNING)

    def _log(self, job: str | None, kind: str, message: str, level: int = logging.INFO) -> None:
        LOGGER.log(level, "%s%s", f"{job}: " if job else "", message)
        if level > logging.DEBUG and kind not in ("backoff",) and not self.fenced:  # a fenced monitor writes nothing
            self.store.log_event(job, kind, message)
        if self._alerts is not None and kind in LOGGED_ALERTS:
            self._alert(kind, job, message)

    def _alert(self, kind: str, job: str | None, message: str, once_for: str | None = None) -> None:
        """Send an alert. With `once_for`, an alert of this kind already sent for the same thing (the same
        summary at every tick, the same stall) is not sent again, across restarts and ticks (the store keeps it)."""
        if once_for is not None:
            if self.store.campaign_value(f"alerted:{kind}") == once_for:
                return
            self.store.set_campaign_value(f"alerted:{kind}", once_for)
        problem = self._alerts.send(kind, job, message)
        if problem:
            LOGGER.warning("alert %s not sent: %s", kind, problem)
            self.store.log_event(job, "alert-failed", f"{kind}: {problem}")

    def _watch_progress(self, records: dict[str, JobRecord], now: float) -> None:
        """The heartbeat file external watchers read, and the no-progress alert."""
        states = Counter(record.state.value for record in records.values())
        write_heartbeat(self.store.path.parent, now, dict(states))
        limit = self._alerts.settings.no_progress_secs if self._alerts is not None else None
        if limit is None:
            return
        moved = max((max(r.updated_at, r.output_changed_at or 0.0) for r in records.values()), default=now)
        if now - moved > limit and self.store.campaign_value("alerted:no-progress") != repr(moved):
            message = (f"no job changed state or output for {now - moved:.0f}s (notify.no_progress_secs {limit:g}); "
                       f"last change at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(moved))}")
            self._log(None, "no-progress", message, logging.WARNING)
            self._alert("no-progress", None, message, once_for=repr(moved))
