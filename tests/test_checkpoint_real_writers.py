"""Checkpoints the real writers left, whole and dead (tests/fixtures/checkpoints, scripts/record-checkpoint-fixtures.sh):
orch's verdict on every save must be what the real readers did with it (truth.json)."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from orchestrator.campaign.checkpoints import complete_iterations, inspect_checkpoints
from orchestrator.campaign.claims import claim_next, pending_iterations
from orchestrator.campaign.cooldown_link import link_checkpoint
from orchestrator.campaign.whole_files import distcp_ranges, file_problem

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints"
TRUTH = json.loads((FIXTURES / "truth.json").read_text())
CASES = sorted(case for case in TRUTH if not case.startswith("_"))


def orch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True, timeout=60)


def copy_case(case: str, tmp_path: Path) -> Path:
    run = tmp_path / case
    shutil.copytree(FIXTURES / case, run)
    return run


def test_the_fixtures_cover_every_writer_and_kind_of_dead_save():
    writers = {TRUTH[case]["writer"] for case in CASES}
    assert {f"deepspeed ZeRO-{stage} fp32 plain" for stage in range(4)} <= writers
    assert {"deepspeed ZeRO-2 bf16 plain", "deepspeed ZeRO-1 fp32 pipe"} <= writers
    assert any(writer.startswith("megatron-core dist_checkpointing torch_dist") for writer in writers)
    faults = {TRUTH[case]["fault"] for case in CASES}
    assert {"stop_rank1_optim", "kill_rank1_optim", "kill_rank0_at_latest", "kill_rank0_in_latest",
            "kill_rank1_mid_write", "kill_at_metadata_rename", "kill_before_metadata_json"} <= faults
    dead = sum(not save["loads"] for case in CASES for save in TRUTH[case]["saves"].values())
    assert dead >= 10 and TRUTH["_recorded_with"]["deepspeed"] == "0.19.8"


@pytest.mark.parametrize("case", CASES)
def test_a_save_is_complete_exactly_when_the_real_readers_load_it(case):
    verdicts = {checkpoint.path.name: checkpoint for checkpoint in inspect_checkpoints(FIXTURES / case / "checkpoints")}
    for folder, truth in TRUTH[case]["saves"].items():
        assert verdicts[folder].complete == truth["loads"], (folder, verdicts[folder].reason, truth["error"])


def test_rank1_stopped_mid_write_while_latest_names_the_save(tmp_path):
    """The issue's case: every file name there, `latest` = global_step4, rank 1's shard cut short."""
    run = copy_case("zero1_rank1_stopped_mid_write", tmp_path)
    assert (run / "checkpoints" / "latest").read_text() == "global_step4"
    assert pending_iterations(run) == [2]
    explained = orch("ckpt", "pending", str(run), "--explain").stdout.splitlines()
    assert explained[1].startswith("4\tnot complete (deepspeed): not whole: zero_pp_rank_1_mp_rank_00_optim_states.pt is "
                                   "truncated (2350 bytes, no end-of-central-directory record)")
    assert claim_next(run, min_iter=3) is None
    assert not link_checkpoint(run / "checkpoints", tmp_path / "cooldown" / "checkpoints", 4)
    assert not (tmp_path / "cooldown").exists()
    assert orch("ckpt", "link", str(run), str(tmp_path / "cooldown"), "4").stdout == "0\n"  # a start condition: not yet
    assert link_checkpoint(run / "checkpoints", tmp_path / "cooldown" / "checkpoints", 2)


def test_an_empty_latest_does_not_hide_every_save(tmp_path):
    """Rank 0 killed between truncating and writing `latest`: both saves are whole and found."""
    run = copy_case("zero1_rank0_killed_in_latest", tmp_path)
    assert (run / "checkpoints" / "latest").read_bytes() == b""
    assert pending_iterations(run) == [2, 4]
    assert orch("ckpt", "pending", str(run), "--count").stdout == "2\n"


def test_a_whole_save_latest_does_not_name_is_found(tmp_path):
    run = copy_case("zero1_rank0_killed_before_latest", tmp_path)
    assert (run / "checkpoints" / "latest").read_text() == "global_step2"
    assert complete_iterations(run / "checkpoints") == [2, 4]


@pytest.mark.parametrize("case, shard", [
    ("zero1_whole", "zero_pp_rank_1_mp_rank_00_optim_states.pt"),
    ("zero3_whole", "zero_pp_rank_1_mp_rank_00_model_states.pt"),
])
def test_a_first_save_whose_second_rank_has_not_written_is_not_complete(tmp_path, case, shard):
    """The run's only save, rank 1's shard not yet created: no other folder shows the rank grid, so the shard
    count comes from the dp_world_size rank 0's model states record (2 on these 2-rank runs)."""
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / case / "checkpoints" / "global_step2", run / "checkpoints" / "global_step2")
    (run / "checkpoints" / "latest").write_text("global_step2")
    assert complete_iterations(run / "checkpoints") == [2]
    (run / "checkpoints" / "global_step2" / shard).unlink()
    [verdict] = inspect_checkpoints(run / "checkpoints")
    assert not verdict.complete and verdict.reason == f"missing {shard}"
    assert claim_next(run) is None


def test_resume_point_moves_the_dead_save_aside_and_repoints_latest(tmp_path):
    run = copy_case("zero1_rank1_stopped_mid_write", tmp_path)
    dry = orch("ckpt", "resume", str(run), "--dry-run")
    assert dry.stdout == "2\n" and "would move global_step4" in dry.stderr
    assert (run / "checkpoints" / "global_step4").is_dir()  # a dry run changes nothing
    resumed = orch("ckpt", "resume", str(run))
    assert resumed.returncode == 0 and resumed.stdout == "2\n"
    assert "truncated" in resumed.stderr and "'global_step4' -> 'global_step2'" in resumed.stderr
    [moved] = (run / "checkpoints" / ".incomplete").iterdir()
    assert moved.name.startswith("global_step4.") and (moved / "zero_pp_rank_1_mp_rank_00_optim_states.pt").exists()
    assert (run / "checkpoints" / "latest").read_text() == "global_step2"
    assert sorted(path.name for path in (run / "checkpoints").iterdir() if path.is_dir()) == [".incomplete", "global_step2"]
    again = orch("ckpt", "resume", str(run))  # idempotent: nothing left to move
    assert again.stdout == "2\n" and again.stderr == ""
    assert orch("ckpt", "latest", str(run)).stdout == "2\n"


def test_resume_point_keeps_whole_saves_and_fills_an_empty_latest(tmp_path):
    run = copy_case("zero1_rank0_killed_in_latest", tmp_path)
    resumed = orch("ckpt", "resume", str(run))
    assert resumed.stdout == "4\n" and "moved" not in resumed.stderr
    assert (run / "checkpoints" / "latest").read_text() == "global_step4"


def test_resume_with_no_whole_save_removes_latest_so_the_trainer_starts_fresh(tmp_path):
    run = copy_case("zero1_rank1_stopped_mid_write", tmp_path)
    shutil.rmtree(run / "checkpoints" / "global_step2")
    resumed = orch("ckpt", "resume", str(run))
    assert resumed.stdout == "\n" and "latest ('global_step4') removed" in resumed.stderr
    assert not (run / "checkpoints" / "latest").exists() and not (run / "checkpoints" / "global_step4").exists()


def test_resume_never_moves_a_linked_branch_point(tmp_path):
    source = copy_case("zero1_whole", tmp_path)
    branch = tmp_path / "branch"
    assert link_checkpoint(source / "checkpoints", branch / "checkpoints", 2)
    assert orch("ckpt", "resume", str(branch)).stdout == "2\n"
    assert (branch / "checkpoints" / "global_step2").is_symlink()


def test_torch_dist_every_distcp_as_long_as_metadata_records(tmp_path):
    run = copy_case("torch_dist_whole", tmp_path)
    folder = run / "checkpoints" / "iter_0000004"
    ends = distcp_ranges(folder / ".metadata")
    assert ends and all(end <= (folder / name).stat().st_size for name, end in ends.items())
    assert complete_iterations(run / "checkpoints") == [2, 4]
    shard = folder / "__1_0.distcp"
    size = shard.stat().st_size
    shard.write_bytes(shard.read_bytes()[: size // 2])  # a forked writer killed after .metadata was written
    reason = {c.iteration: c.reason for c in inspect_checkpoints(run / "checkpoints")}[4]
    assert reason == f"not whole: __1_0.distcp is truncated ({size // 2} of the {ends['__1_0.distcp']} bytes .metadata records)"
    (folder / "__1_0.distcp").unlink()
    assert "__1_0.distcp, which .metadata refers to, is missing" in \
        {c.iteration: c.reason for c in inspect_checkpoints(run / "checkpoints")}[4]
    metadata = run / "checkpoints" / "iter_0000002" / ".metadata"
    metadata.write_bytes(metadata.read_bytes()[:200])
    assert complete_iterations(run / "checkpoints") == []


def test_torch_dist_without_any_tracker_is_committed_by_its_metadata_json(tmp_path):
    """megatron-core alone writes no tracker: metadata.json, written last, commits each folder."""
    run = copy_case("torch_dist_whole", tmp_path)
    (run / "checkpoints" / "latest_checkpointed_iteration.txt").unlink()
    assert complete_iterations(run / "checkpoints") == [2, 4]
    (run / "checkpoints" / "iter_0000004" / "metadata.json").unlink()
    assert complete_iterations(run / "checkpoints") == [2]


def test_zip_end_record_rules(tmp_path):
    real = FIXTURES / "zero1_whole" / "checkpoints" / "global_step2" / "mp_rank_00_model_states.pt"
    assert file_problem(real) == ""
    data = real.read_bytes()
    for cut in (1, 21, len(data) // 2, len(data) - 1):
        (tmp_path / "cut.pt").write_bytes(data[:cut])
        assert "truncated" in file_problem(tmp_path / "cut.pt"), cut
    (tmp_path / "empty.pt").write_bytes(b"")
    assert file_problem(tmp_path / "empty.pt") == "empty.pt is empty"
    with zipfile.ZipFile(tmp_path / "commented.pt", "w") as archive:  # another writer may add a zip comment
        archive.writestr("archive/data.pkl", b"x" * 1000)
        archive.comment = b"written by another tool"
    assert file_problem(tmp_path / "commented.pt") == ""
    (tmp_path / "legacy.pt").write_bytes(b"\x80\x02legacy pickle format")  # no end marker to read
    assert file_problem(tmp_path / "legacy.pt") == ""


def test_safetensors_header_sizes_cover_the_file(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                         "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]},
                         "__metadata__": {"format": "pt"}}).encode()
    whole = struct.pack("<Q", len(header)) + header + bytes(24)
    (tmp_path / "model.safetensors").write_bytes(whole)
    assert file_problem(tmp_path / "model.safetensors") == ""
    (tmp_path / "model.safetensors").write_bytes(whole[:-5])
    assert file_problem(tmp_path / "model.safetensors") == \
        f"model.safetensors is truncated ({len(whole) - 5} of {len(whole)} bytes)"
    (tmp_path / "model.safetensors").write_bytes(whole[:20])
    assert "header runs past" in file_problem(tmp_path / "model.safetensors")
