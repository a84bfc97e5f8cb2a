"""`orch check`: Megatron flags against the parser schema made from the real source, data paths, checkpoint sources."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from monitor_campaign import campaign_state

from orchestrator.check import CheckOptions, check_campaign, data_paths, flags
from orchestrator.config import load_jobs
from orchestrator.errors import UserError
from orchestrator.planning.lr_schedules import megatron_deepspeed, megatron_lm
from orchestrator.render import render_job

REPO = Path(__file__).resolve().parents[1]
ORCH = [sys.executable, "-m", "orchestrator"]
SCALING = REPO / "configs" / "scaling_exps.yaml"


def orch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*ORCH, *args], capture_output=True, text=True, cwd=cwd)


# -- the shipped schemas ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("framework", "styles"), [("megatron-lm", megatron_lm.DECAY_STYLES),
                                                   ("megatron-deepspeed", megatron_deepspeed.DECAY_STYLES)])
def test_schemas_record_their_source_and_agree_with_the_schedule_ports(framework, styles):
    schema = flags.load_schema(framework)
    assert len(schema.commit) == 40 and schema.version
    assert schema.flags["--lr-decay-style"]["choices"] == list(styles)
    assert schema.flags["--override-opt_param-scheduler"] == {"takes_value": False}


def test_megatron_lm_schema_has_the_dataclass_flags():
    known = flags.load_schema("megatron-lm").flags
    # SchedulerConfig (a config dataclass, not an add_argument call) with its Literal choices
    assert known["--lr-wsd-decay-style"]["choices"] == ["exponential", "linear", "cosine", "minus_sqrt"]
    # field(init=False) is no flag; argparse_meta names are
    assert "--lr-decay-steps" not in known and "--override-opt-param-scheduler" in known


def test_every_schedule_flag_orch_offers_is_in_the_parser():
    from orchestrator.cli.lr import _flag_spelling
    from orchestrator.planning.lr_schedules import parameter_names

    for module, framework in ((megatron_lm, "megatron-lm"), (megatron_deepspeed, "megatron-deepspeed")):
        known = flags.load_schema(framework).flags
        offered = [_flag_spelling(name) for name in parameter_names(module)]
        assert [flag for flag in offered if flag not in known] == [], framework


def test_version_must_match_the_schema():
    with pytest.raises(UserError, match="make one for core_r0.1 with scripts/extract-megatron-flags.py"):
        flags.load_schema("megatron-lm", "core_r0.1")
    assert flags.load_schema("megatron-lm", flags.load_schema("megatron-lm").commit[:8]).framework == "megatron-lm"


# -- commands in rendered scripts ------------------------------------------------------------------------
def test_every_command_of_the_shipped_megatron_template_is_accepted(monkeypatch):
    monkeypatch.chdir(REPO)
    jobs = [job for job in load_jobs(str(SCALING)) if job.params.get("MODE") == "TRAIN"][:40]
    rendered = [(job, render_job(job)) for job in jobs]
    assert all(flags.megatron_invocations(script) for _, script in rendered)
    assert check_campaign(rendered, CheckOptions(data=False)) == []


def test_typos_and_values_off_the_choices_name_job_flag_and_closest_flag(monkeypatch):
    monkeypatch.chdir(REPO)
    job = next(job for job in load_jobs(str(SCALING), fixes=[
        "MEGATRON_EXTRA_ARGS=--lr-decay-stile cosine --normalization RmsNorm --ckpt-format $FORMAT"]) if job.params["MODE"] == "TRAIN")
    problems = check_campaign([(job, render_job(job))], CheckOptions(data=False))
    assert len(problems) == 2  # --ckpt-format $FORMAT is only known at run time
    assert problems[0].startswith(f"job {job.name}: unknown flag --lr-decay-stile (did you mean --lr-decay-style?)")
    assert "--normalization 'RmsNorm' is not one of LayerNorm, RMSNorm" in problems[1]


def test_commands_spread_over_lines_quotes_and_arrays():
    script = textwrap.dedent("""\
        #!/bin/bash
        #SBATCH --nodes=2
        ARGS=(
            --num-layers 2  # a comment
            --lr-decay-style "WSD"
        )
        srun bash -c '
            exec python "$0" "$@"
        ' /m/pretrain_gpt.py "${ARGS[@]}" \\
            --bf16 --lr-wsd-decay-style=cosinus > log.txt
        python other.py --not-megatron
        """)
    [invocation] = flags.megatron_invocations(script)
    assert invocation.line == 7
    assert invocation.arguments == ["--num-layers", "2", "--lr-decay-style", "WSD", "--bf16",
                                    "--lr-wsd-decay-style=cosinus"]
    problems = flags.check_arguments(invocation.arguments, flags.load_schema("megatron-lm"))
    assert problems == ["--lr-wsd-decay-style 'cosinus' is not one of exponential, linear, cosine, minus_sqrt"]


# -- data and checkpoints --------------------------------------------------------------------------------
def test_data_prefixes_lists_and_generated_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    for suffix in (".bin", ".idx"):
        (tmp_path / "d" / f"a_text_document{suffix}").write_text("")
    (tmp_path / "d" / "b_text_document.bin").write_text("")
    (tmp_path / "list.txt").write_text("0.7 d/a_text_document web\n0.3 d/c_text_document.bin code\n")
    params = {"DATA_PATH": "0.5 d/a_text_document 0.5 d/b_text_document", "DATA_FILE_LIST": "list.txt"}
    problems = data_paths.job_data_problems(params, [["--data-path", "d/a_text_document", "--data-file-list", "x.txt"]],
                                            generated={"x.txt"})
    assert problems == [
        "DATA_PATH: data prefix d/b_text_document has no d/b_text_document.idx",
        "DATA_FILE_LIST (list.txt): data prefix d/c_text_document has no d/c_text_document.bin / d/c_text_document.idx",
    ]
    assert data_paths.job_data_problems({"DATA_FILE_LIST": "nope.txt", "DATA_PATH": "$DATA/x"}, [], set()) == [
        "DATA_FILE_LIST: data-file list nope.txt does not exist"]


CAMPAIGN = """\
name: "{EXP}_{MODE}"
template: t.sbatch
sbatch_script: "scripts/{name}.sbatch"
output_file: "logs/{name}.out"
cmd: "sbatch {sbatch_script}"
EXP: [a, b]
RUN_DIR: "runs/{EXP}"
MODE:
  - TRAIN: {PROGRAM: "python /m/pretrain_gpt.py --num-layers 2 --bf16"}
  - CONVERT: {PROGRAM: "orch ckpt claim {RUN_DIR}"}
"""


def test_cli_check_and_build_abort_before_writing_anything(tmp_path):
    (tmp_path / "t.sbatch").write_text("#!/bin/bash\n{PROGRAM}\n")
    (tmp_path / "c.yaml").write_text(CAMPAIGN)
    ok = orch("check", "c.yaml", cwd=tmp_path)
    assert ok.returncode == 0 and "4 jobs, 2 Megatron command(s) checked: no problems" in ok.stdout
    # a converter whose run no job trains
    only_converters = orch("check", "c.yaml", "MODE=CONVERT", cwd=tmp_path)
    assert only_converters.returncode == 2
    assert "job a_CONVERT: converts checkpoints of runs/a, which no job of the campaign trains" in only_converters.stdout
    (tmp_path / "c.yaml").write_text(CAMPAIGN.replace("--num-layers 2", "--num-layer 2"))
    built = orch("build", "c.yaml", cwd=tmp_path)
    assert built.returncode == 2 and "Traceback" not in built.stderr
    assert "2 jobs (e.g. a_TRAIN): unknown flag --num-layer (did you mean --num-layers?)" in built.stderr
    assert not (tmp_path / "scripts").exists() and not (tmp_path / ".orch").exists()
    assert orch("build", "c.yaml", "--no-check", cwd=tmp_path).returncode == 0
    ran = orch("run", "c.yaml", "--scheduler", "local", "--yes", cwd=tmp_path)
    assert ran.returncode == 2 and "unknown flag --num-layer" in ran.stderr  # the built scripts are checked too
    assert not (campaign_state(tmp_path) / "state.db").exists()  # nothing submitted, no monitor started


EXTRACT = REPO / "scripts" / "extract-megatron-flags.py"


def _git_repo(root: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(textwrap.dedent(text))
    for command in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(["git", "-C", str(root), *command], check=True)
    return root


def test_extractor_reads_add_argument_and_config_dataclasses_as_megatron_builds_them(tmp_path):
    source = _git_repo(tmp_path / "megatron-lm", {
        "megatron/training/arguments.py": """
            import argparse
            from megatron.training.config import SchedulerConfig
            def _add_args(parser):
                group = parser.add_argument_group(title="x")
                group.add_argument("--lr", type=float, default=None)
                group.add_argument("--bf16", action="store_true")
                group.add_argument("--ckpt-format", default="torch", choices=["torch", "torch_dist"])
                exclude = ["hidden"]
                factory = ArgumentGroupFactory(SchedulerConfig, exclude=exclude)
                return parser
            """,
        "megatron/training/config/scheduler.py": """
            import enum
            from dataclasses import dataclass, field
            from typing import Literal, Optional
            class Backend(enum.Enum):
                flash = 1
                local = 2
            @dataclass
            class Base:
                seed: int = 1234
            @dataclass(kw_only=True)
            class SchedulerConfig(Base):
                lr_decay_style: Literal["constant", "WSD"] = "constant"
                backend: Backend = Backend.flash
                use_fused: bool = True
                log_it: bool = False
                sizes: Optional[list[int]] = None
                lr_decay_steps: int | None = field(init=False, default=None)
                override: bool = field(default=False, metadata={"argparse_meta": {"arg_names": ["--override-opt_param-scheduler"]}})
                hidden: int = 3
            """,
    })
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(EXTRACT), "--framework", "megatron-lm", "--source", str(source),
                             "--megatron-version", "v-test", "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "megatron-lm.json").read_text())
    assert data["version"] == "v-test" and len(data["commit"]) == 40
    assert data["flags"] == {
        "--backend": {"takes_value": True, "choices": ["flash", "local"]},
        "--bf16": {"takes_value": False},
        "--ckpt-format": {"takes_value": True, "choices": ["torch", "torch_dist"]},
        "--disable-use-fused": {"takes_value": False},
        "--log-it": {"takes_value": False},
        "--lr": {"takes_value": True},
        "--lr-decay-style": {"takes_value": True, "choices": ["constant", "WSD"]},
        "--no-use-fused": {"takes_value": False},
        "--override-opt_param-scheduler": {"takes_value": False},
        "--seed": {"takes_value": True},
        "--sizes": {"takes_value": True, "nargs": "+"},
    }


def test_a_schema_file_of_another_release_replaces_the_shipped_one(tmp_path):
    schema = {"framework": "megatron-lm", "version": "core_r0.9.0", "commit": "0" * 40,
              "flags": {"--num-layers": {"takes_value": True}, "--bf16": {"takes_value": False}}}
    path = tmp_path / "megatron-lm.json"
    path.write_text(json.dumps(schema))
    loaded = flags.load_schema("megatron-lm", "core_r0.9.0", str(path))
    assert loaded.label == "megatron-lm core_r0.9.0"
    assert flags.check_arguments(["--num-layers", "2", "--bf16", "--lr", "1e-3"], loaded) == [
        "unknown flag --lr"]  # in the shipped schema --lr exists: this one was used
    with pytest.raises(UserError, match="--flag-schema .*nope.json: cannot read it"):
        flags.load_schema("megatron-lm", None, str(tmp_path / "nope.json"))


# -- Megatron's start-up arithmetic, problems grouped by cause ----------------------------------------------------
def test_parallelism_rules_at_the_jobs_world_size():
    from orchestrator.check.parallelism import parallelism_problems

    base = ["--micro-batch-size", "8", "--global-batch-size", "128", "--num-attention-heads", "18",
            "--hidden-size", "1152", "--num-layers", "24"]
    assert parallelism_problems(base, 16) == []
    (batch,) = parallelism_problems(base, 32)  # 8 x 32 = 256 does not divide 128
    assert batch.startswith("global batch size (128) is not divisible by micro batch size (8) times data parallel")
    assert parallelism_problems([*base, "--rampup-batch-size", "16", "16", "1000"], 32) == []
    assert parallelism_problems([*base, "--global-batch-size", "$GBS"], 32) == []  # known only at run time
    (world,) = parallelism_problems([*base, "--tensor-model-parallel-size", "4"], 6)
    assert world.startswith("world size (6) is not divisible by tensor model parallel size (4)")
    heads = parallelism_problems([*base, "--tensor-model-parallel-size", "4"], 16)
    assert "num_attention_heads (18) must be a multiple of tensor_model_parallel_size (4)" in heads
    layers = parallelism_problems([*base, "--pipeline-model-parallel-size", "5", "--global-batch-size", "120"], 5)
    assert layers == ["num_layers (24) must be a multiple of pipeline_model_parallel_size (5)"]
    assert parallelism_problems([*base, "--seq-length", "4096", "--max-position-embeddings", "2048"], 1) == [
        "--seq-length (4096) is longer than --max-position-embeddings (2048)"]


def test_the_shipped_scaling_campaign_passes_and_its_old_400m_batch_is_refused_once_with_a_count(tmp_path):
    ok = orch("check", str(SCALING), "--no-data-check", cwd=REPO)
    assert ok.returncode == 0 and "480 Megatron command(s) checked: no problems" in ok.stdout, ok.stdout[-2000:]
    old = SCALING.read_text().replace("TRAIN_NODES: 8, MICRO_BATCH_SIZE: 4", "TRAIN_NODES: 8, MICRO_BATCH_SIZE: 8")
    (tmp_path / "old.yaml").write_text(old)
    for relative in ("templates", "helpers"):
        (tmp_path / relative).symlink_to(REPO / relative)
    result = orch("check", "old.yaml", "--no-data-check", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stdout.splitlines()
    assert lines[0].startswith("40 jobs (e.g. 400M_lr0.01_gbs128_biaswith_pretrain_TRAIN): at 32 GPUs, global batch "
                               "size (128) is not divisible by micro batch size (8)")
    assert "40 problem(s) from 1 cause(s)" in lines[1] and "--no-check" in lines[2]
    built = orch("build", "old.yaml", "--no-data-check", cwd=tmp_path)
    assert built.returncode == 2 and "40 problem(s) from 1 cause(s)" in built.stderr and "--no-check" in built.stderr
    assert not (tmp_path / "sbatch_scripts").exists()


def test_mixture_source_lists_are_checked_and_no_command_is_a_warning(tmp_path):
    cpt = (REPO / "configs" / "cpt_stages.yaml").read_text()
    (tmp_path / "cpt.yaml").write_text(cpt)
    for relative in ("templates", "helpers"):
        (tmp_path / relative).symlink_to(REPO / relative)
    result = orch("check", "cpt.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "data_sources.D1: data-file list /path/to/lists/d1.txt does not exist" in result.stdout
    assert "64 jobs, 0 Megatron command(s) checked" in result.stdout
    assert "no job script runs a Megatron entry point (pretrain_*.py)" in result.stderr and "--entry" in result.stderr
