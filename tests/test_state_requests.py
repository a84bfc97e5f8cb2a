"""Requests to a running monitor (`orch cancel` while it runs): posted whole, answered with text and outcome."""

from __future__ import annotations

from orchestrator.state.requests import (
    answer_request,
    has_pending_requests,
    pending_requests,
    post_request,
    wait_for_answer,
)


def test_a_request_is_seen_answered_and_gone(tmp_path):
    assert not has_pending_requests(tmp_path) and wait_for_answer(tmp_path / "none.json", 0) is None
    posted = post_request(tmp_path, "cancel", {"a": "/x/a.sbatch"}, "me@host at now")
    assert has_pending_requests(tmp_path)
    (request,) = pending_requests(tmp_path)
    assert (request.kind, request.jobs, request.by) == ("cancel", {"a": "/x/a.sbatch"}, "me@host at now")
    answer_request(request, "slurm did not answer", ok=False)
    assert not has_pending_requests(tmp_path)
    answer = wait_for_answer(posted, 1)
    assert answer is not None and (answer.text, answer.ok) == ("slurm did not answer", False)
    assert list((tmp_path / "requests").iterdir()) == []  # the answer is taken away with it


def test_an_unreadable_request_is_answered_as_such(tmp_path):
    (tmp_path / "requests").mkdir()
    broken = tmp_path / "requests" / "1.0-abcd.json"
    broken.write_text("{not json")
    assert pending_requests(tmp_path) == []
    answer = wait_for_answer(broken, 1)
    assert answer is not None and not answer.ok and "not understood" in answer.text
