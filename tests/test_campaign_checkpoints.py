"""Checkpoint discovery and completeness (orchestrator.campaign.checkpoints), both layouts."""

from __future__ import annotations

import pytest

from campaign_fixtures import make_checkpoint, write_tracker
from orchestrator.campaign.checkpoints import (
    complete_iterations,
    has_rank0_files,
    list_checkpoint_dirs,
    tracked_iteration,
)


@pytest.mark.parametrize("fmt", ["torch", "torch_tp_pp", "torch_dist", "torch_dist_json", "npz", "deepspeed"])
def test_every_known_format_is_complete_once_settled(tmp_path, fmt):
    make_checkpoint(tmp_path, 100, fmt)
    assert complete_iterations(tmp_path) == [100]


def test_folder_without_rank0_model_file_is_not_a_checkpoint(tmp_path):
    folder = make_checkpoint(tmp_path, 100, "partial")
    assert not has_rank0_files(folder)
    assert complete_iterations(tmp_path) == []


def test_young_checkpoint_is_still_being_written(tmp_path):
    make_checkpoint(tmp_path, 100, age_secs=3600)
    make_checkpoint(tmp_path, 200, age_secs=5)
    assert complete_iterations(tmp_path, settle_secs=60) == [100]
    assert complete_iterations(tmp_path, settle_secs=1) == [100, 200]


def test_tracked_iteration_is_finished_whatever_its_age(tmp_path):
    make_checkpoint(tmp_path, 100, age_secs=1)
    make_checkpoint(tmp_path, 200, age_secs=1)
    write_tracker(tmp_path, 100)
    assert tracked_iteration(tmp_path) == 100
    assert complete_iterations(tmp_path, settle_secs=60) == [100]


def test_deepspeed_latest_file_counts_as_tracker(tmp_path):
    make_checkpoint(tmp_path, 30, "deepspeed", age_secs=1)
    write_tracker(tmp_path, 30, deepspeed=True)
    assert list_checkpoint_dirs(tmp_path)[30].name == "global_step30"
    assert complete_iterations(tmp_path, settle_secs=60) == [30]


def test_missing_or_empty_folders_hold_nothing(tmp_path):
    assert complete_iterations(tmp_path / "nope") == []
    assert tracked_iteration(tmp_path / "nope") is None
    (tmp_path / "iter_0000100").mkdir()  # an empty iteration folder
    (tmp_path / ".iter_0000200.tmp.1").mkdir()  # a staging folder is not a checkpoint
    assert complete_iterations(tmp_path) == []


def test_garbage_tracker_is_ignored(tmp_path):
    make_checkpoint(tmp_path, 100, age_secs=1)
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("release")
    assert tracked_iteration(tmp_path) is None
    assert complete_iterations(tmp_path, settle_secs=60) == []
