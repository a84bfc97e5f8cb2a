"""Requests to the campaign's monitor from other commands and hosts (`orch cancel` while a monitor runs).

Only the lease holder writes the store; a command that needs a write while a monitor holds the lease
posts a request file in the campaign's `requests/` folder instead (written whole, then renamed into
place), and the monitor applies it at the start of its next cycle, answers in `NAME.answer` (its text and
whether it succeeded) and removes the request. Nothing but files and renames: it works on every shared file system, from any host.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.files import write_atomically

REQUESTS_DIR = "requests"


@dataclass(frozen=True)
class Request:
    path: Path
    kind: str
    jobs: dict[str, str]
    """Job name -> its batch script (what tells the campaign's submissions from another's)."""
    by: str
    """`user@host at time`."""


@dataclass(frozen=True)
class Answer:
    text: str
    ok: bool
    """False when the request could not be carried out in full (the command then exits 1)."""


def post_request(directory: Path, kind: str, jobs: dict[str, str], by: str) -> Path:
    folder = directory / REQUESTS_DIR
    path = folder / f"{time.time():.6f}-{secrets.token_hex(4)}.json"
    write_atomically(path, json.dumps({"kind": kind, "jobs": jobs, "by": by}))
    return path


def _request_names(folder: Path) -> list[str]:
    """Posted requests, oldest first (temp files of a post under way start with a dot)."""
    try:
        return sorted(name for name in os.listdir(folder) if name.endswith(".json") and not name.startswith("."))
    except OSError:
        return []


def has_pending_requests(directory: Path) -> bool:
    return bool(_request_names(directory / REQUESTS_DIR))


def pending_requests(directory: Path) -> list[Request]:
    """Requests not yet answered, oldest first; an unreadable one is answered as such and dropped."""
    folder = directory / REQUESTS_DIR
    requests = []
    for name in _request_names(folder):
        path = folder / name
        try:
            data = json.loads(path.read_text())
            requests.append(Request(path, str(data["kind"]), {str(k): str(v) for k, v in data["jobs"].items()},
                                    str(data["by"])))
        except FileNotFoundError:
            continue
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            answer_request(Request(path, "unreadable", {}, ""), f"request not understood: {error}", ok=False)
    return requests


def answer_request(request: Request, text: str, ok: bool) -> None:
    write_atomically(request.path.with_suffix(".answer"), json.dumps({"text": text, "ok": ok}))
    request.path.unlink(missing_ok=True)


def wait_for_answer(request_path: Path, timeout_secs: float) -> Answer | None:
    """The monitor's answer to a posted request (which is then removed), or None if none came in time."""
    answer = request_path.with_suffix(".answer")
    deadline = time.monotonic() + timeout_secs
    while True:
        try:
            text = answer.read_text()
        except FileNotFoundError:
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.2)
            continue
        answer.unlink(missing_ok=True)
        try:
            data = json.loads(text)
            return Answer(str(data["text"]), bool(data["ok"]))
        except (ValueError, KeyError, TypeError):
            return Answer(f"the monitor's answer is not readable: {text[:200]!r}", False)
