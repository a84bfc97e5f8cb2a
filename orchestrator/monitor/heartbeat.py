"""`heartbeat.json` in the campaign's state folder: written atomically at the end of every monitor cycle, for
watchers outside orch (a site's monitoring, a cron job that mails when it is old): {"time", "host", "pid",
"states"}. A long-running monitor renews it every poll; ticks every tick."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from orchestrator.files import write_atomically

HEARTBEAT_NAME = "heartbeat.json"


def write_heartbeat(directory: Path, now: float, states: dict[str, int]) -> None:
    try:
        write_atomically(directory / HEARTBEAT_NAME,
                         json.dumps({"time": now, "host": socket.gethostname(), "pid": os.getpid(), "states": states}))
    except OSError:
        pass  # a watcher's file: never a reason to stop the monitor
