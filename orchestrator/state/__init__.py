"""The monitor's durable memory: an SQLite store under `.orch/` and the one-monitor-per-campaign lock."""

from orchestrator.state.lock import MonitorLock, acquire_monitor_lock
from orchestrator.state.store import AttemptRecord, JobRecord, StateConflict, StateStore, state_dir

__all__ = ["AttemptRecord", "JobRecord", "MonitorLock", "StateConflict", "StateStore", "acquire_monitor_lock", "state_dir"]
