"""Checkpoint completeness from the writers' order (orchestrator.campaign.checkpoints), every layout."""

from __future__ import annotations

import pytest

from campaign_fixtures import LAYOUTS, make_checkpoint, write_tracker
from orchestrator.campaign.checkpoints import complete_iterations, inspect_checkpoints, list_checkpoint_dirs, tracked_iteration


def verdicts(checkpoints) -> dict[int, tuple[bool, str]]:
    return {c.iteration: (c.complete, c.reason) for c in inspect_checkpoints(checkpoints)}


@pytest.mark.parametrize("fmt", [*LAYOUTS, "mds"])
def test_every_layout_is_complete_once_its_tracker_names_it(tmp_path, fmt):
    make_checkpoint(tmp_path, 100, fmt)
    assert complete_iterations(tmp_path) == [100]


@pytest.mark.parametrize("fmt", [fmt for fmt in (*LAYOUTS, "mds") if fmt not in ("deepspeed", "zero3", "pipeline")])
def test_a_save_above_a_commit_tracker_is_never_complete_however_old(tmp_path, fmt):
    """Megatron's tracker (after the barrier) and `latest_universal` (after the conversion) commit a save."""
    make_checkpoint(tmp_path, 100, fmt)
    make_checkpoint(tmp_path, 200, fmt, track=False)  # every file there, the tracker never moved: died or busy
    assert complete_iterations(tmp_path) == [100]
    assert "above the tracker" in verdicts(tmp_path)[200][1]


@pytest.mark.parametrize("fmt", ["deepspeed", "zero3", "pipeline"])
def test_deepspeed_latest_is_only_a_hint(tmp_path, fmt):
    """Rank 0 writes `latest` at ZeRO 0-2 without waiting for the others: a whole save it does not name is
    complete (rank 0 killed before `latest`), and one it names is not when a file is cut short."""
    make_checkpoint(tmp_path, 100, fmt)
    make_checkpoint(tmp_path, 200, fmt, track=False)
    assert complete_iterations(tmp_path) == [100, 200]
    assert "a hint only" in verdicts(tmp_path)[200][1]
    folder = tmp_path / f"global_step{100}"
    victim = sorted(folder.glob("*.pt"))[-1]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    assert complete_iterations(tmp_path) == [200]
    assert verdicts(tmp_path)[100][1] == f"not whole: {victim.name} is truncated ({victim.stat().st_size} bytes, " \
                                         "no end-of-central-directory record)"


def test_no_tracker_means_no_finished_save(tmp_path):
    make_checkpoint(tmp_path, 100, track=False)
    assert complete_iterations(tmp_path) == []
    assert "no latest_checkpointed_iteration.txt tracker yet" in verdicts(tmp_path)[100][1]


def test_torch_dist_with_only_its_shards_is_dead(tmp_path):
    make_checkpoint(tmp_path, 100, "torch_dist", files=["__0_0.distcp", "__1_0.distcp"])
    complete, reason = verdicts(tmp_path)[100]
    assert not complete and "without metadata.json" in reason
    make_checkpoint(tmp_path, 50, "torch_dist", track=False, files=["__0_0.distcp", "common.pt", "metadata.json"])
    assert not verdicts(tmp_path)[50][0] and "without torch's .metadata" in verdicts(tmp_path)[50][1]


def test_legacy_save_missing_a_rank_is_not_complete(tmp_path):
    make_checkpoint(tmp_path, 100, "torch_tp_pp")
    # a later save where rank (1, 1) never wrote, and one where the highest ranks are absent altogether
    files = [f for f in LAYOUTS["torch_tp_pp"] if not f.startswith("mp_rank_01_001/")]
    make_checkpoint(tmp_path, 200, "torch_tp_pp", files=files, track=False)
    make_checkpoint(tmp_path, 300, "torch_tp_pp", files=["mp_rank_00_000/model_optim_rng.pt"], track=False)
    write_tracker(tmp_path, 300)  # even a tracker cannot make an incomplete grid loadable
    result = verdicts(tmp_path)
    assert result[100][0]
    assert not result[200][0] and "mp_rank_01_001/model_optim_rng.pt" in result[200][1]
    assert not result[300][0] and "mp_rank_00_001/model_optim_rng.pt" in result[300][1]
    assert complete_iterations(tmp_path) == [100]


def test_legacy_rank_folder_without_its_model_file(tmp_path):
    make_checkpoint(tmp_path, 100, files=["mp_rank_00/model_optim_rng.pt", "mp_rank_01/distrib_optim.pt"])
    assert "mp_rank_01/model_optim_rng.pt" in verdicts(tmp_path)[100][1]


def test_zero3_is_counted_and_a_missing_data_parallel_rank_is_not(tmp_path):
    make_checkpoint(tmp_path, 100, "zero3")
    files = [f for f in LAYOUTS["zero3"] if not f.startswith("zero_pp_rank_2_")]
    make_checkpoint(tmp_path, 200, "zero3", files=files)
    result = verdicts(tmp_path)
    assert result[100][0]
    assert not result[200][0] and "zero_pp_rank_2_mp_rank_00_model_states.pt" in result[200][1]


def test_pipeline_layers_need_every_tensor_rank(tmp_path):
    files = [f for f in LAYOUTS["pipeline"] if f != "layer_03-model_01-model_states.pt"]
    make_checkpoint(tmp_path, 100, "pipeline", files=files)
    assert "layer_03-model_01-model_states.pt" in verdicts(tmp_path)[100][1]


def test_megatron_deepspeed_tracker_governs_over_deepspeeds_latest(tmp_path):
    make_checkpoint(tmp_path, 100, "mds")
    make_checkpoint(tmp_path, 200, "deepspeed")  # DeepSpeed wrote `latest`; Megatron's tracker (after the barrier) not yet
    assert tracked_iteration(tmp_path) == 100
    assert complete_iterations(tmp_path) == [100]


def test_universal_checkpoint_counts_by_latest_universal(tmp_path):
    make_checkpoint(tmp_path, 100, "deepspeed")
    make_checkpoint(tmp_path, 100, "universal", track=False)
    assert [c.layout for c in inspect_checkpoints(tmp_path)] == ["deepspeed", "universal"]
    assert [c.complete for c in inspect_checkpoints(tmp_path)] == [True, False]
    write_tracker(tmp_path, 100, "universal")
    assert all(c.complete for c in inspect_checkpoints(tmp_path))
    assert list_checkpoint_dirs(tmp_path)[100].name == "global_step100"  # the training folder wins


def test_missing_or_empty_folders_hold_nothing(tmp_path):
    assert complete_iterations(tmp_path / "absent") == []
    (tmp_path / "iter_0000100").mkdir()
    write_tracker(tmp_path, 100)
    assert complete_iterations(tmp_path) == []
    assert "no model files" in verdicts(tmp_path)[100][1]


def test_an_unreadable_tracker_falls_back_to_whole_files(tmp_path):
    """A tracker whose writer died in it (empty) names nothing: whole saves are still found, never none forever."""
    make_checkpoint(tmp_path, 100, track=False)
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("")
    assert tracked_iteration(tmp_path) is None
    assert complete_iterations(tmp_path) == [100]
    assert "latest_checkpointed_iteration.txt empty, unreadable or absent, a hint only" in verdicts(tmp_path)[100][1]
    broken = tmp_path / "iter_0000100" / "mp_rank_01" / "model_optim_rng.pt"
    broken.write_bytes(broken.read_bytes()[:100])
    assert complete_iterations(tmp_path) == []
    assert verdicts(tmp_path)[100][1].startswith("not whole: mp_rank_01/model_optim_rng.pt is truncated (100 bytes")
