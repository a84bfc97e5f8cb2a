"""`orch build` / `orch plan` end to end through the real CLI, bad input included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FORMAT_TEMPLATE = """#!/bin/bash
#SBATCH --job-name={name}
#SBATCH --output={output_file}
echo "lr={lr} wd={wd} layers={layers}" ${{SLURM_JOB_ID}}
"""

JINJA_TEMPLATE = """#!/bin/bash
#SBATCH --job-name={{ name }}
#SBATCH --output={{ output_file }}
{% if MODE == "train" %}python train.py --lr {{ lr }} --layers {{ layers }}{% else %}python eval.py{% endif %}
echo ${SLURM_JOB_ID}
"""

CONFIG = """\
template: "templates/{MODE}.{engine}"
engine: sbatch
name: "{size}_lr{lr:.0e}_{MODE}"
sbatch_script: "generated/{name}.sbatch"
output_file: "logs/{name}/slurm.out"
cmd: "sbatch {sbatch_script}"
termination_str: "after training is done"
lr: [5e-3, 1e-3]
wd: "expr(1e-4 / {lr})"
size:
  - 10M: {layers: 2}
  - 25M: {layers: 4}
MODE: [train, eval]
"""


def orch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, text=True, capture_output=True, timeout=60)


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture()
def campaign(tmp_path: Path) -> Path:
    (tmp_path / "templates").mkdir()
    for mode in ("train", "eval"):
        (tmp_path / "templates" / f"{mode}.sbatch").write_text(FORMAT_TEMPLATE)
        (tmp_path / "templates" / f"{mode}.j2").write_text(JINJA_TEMPLATE)
    (tmp_path / "c.yaml").write_text(CONFIG)
    return tmp_path


def test_build_writes_every_script_and_output_dir(campaign: Path) -> None:
    result = orch("build", "c.yaml", cwd=campaign)
    assert result.returncode == 0, result.stderr
    assert "8 jobs: 8 scripts written, 0 unchanged" in result.stdout
    script = (campaign / "generated" / "10M_lr5e-03_train.sbatch").read_text()
    assert script == FORMAT_TEMPLATE.format(name="10M_lr5e-03_train", output_file="logs/10M_lr5e-03_train/slurm.out",
                                            lr=0.005, wd=1e-4 / 0.005, layers=2)
    assert (campaign / "logs" / "25M_lr1e-03_eval").is_dir()


def test_rebuild_writes_only_changed_scripts(campaign: Path) -> None:
    assert orch("build", "c.yaml", cwd=campaign).returncode == 0
    before = {p: p.stat().st_mtime_ns for p in (campaign / "generated").iterdir()}
    (campaign / "templates" / "eval.sbatch").write_text(FORMAT_TEMPLATE + "# changed\n")
    result = orch("build", "c.yaml", cwd=campaign)
    assert "4 scripts written, 4 unchanged" in result.stdout
    changed = {p for p in (campaign / "generated").iterdir() if p.stat().st_mtime_ns != before[p]}
    assert changed == {p for p in before if p.name.endswith("_eval.sbatch")}


def test_jinja_templates_render(campaign: Path) -> None:
    result = orch("plan", "c.yaml", "-f", "engine=j2", "--show", "25M_lr1e-03_train", cwd=campaign)
    assert result.returncode == 0, result.stderr
    assert "python train.py --lr 0.001 --layers 4" in result.stdout
    assert "#SBATCH --job-name=25M_lr1e-03_train" in result.stdout
    assert "echo ${SLURM_JOB_ID}" in result.stdout


def test_plan_table_and_json(campaign: Path) -> None:
    table = orch("plan", "c.yaml", "MODE=train", cwd=campaign)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:2] == ["NAME", "MODE"] and lines[-2:] == ["4 jobs", "GPU-hours: none (no job asks for GPUs)"]
    assert "output ~ /after training is done/" in lines[1]
    document = json.loads(orch("plan", "c.yaml", "--json", cwd=campaign).stdout)
    assert document["version"] == 1
    payload = document["jobs"]
    assert [p["name"] for p in payload][:2] == ["10M_lr5e-03_train", "10M_lr5e-03_eval"]
    assert payload[0]["wd"] == pytest.approx(0.02) and payload[0]["layers"] == 2
    assert files_under(campaign) == {"c.yaml", *(f"templates/{m}.{e}" for m in ("train", "eval") for e in ("sbatch", "j2"))}


def test_plan_shows_the_progress_and_failure_rules(campaign: Path) -> None:
    config = campaign / "c.yaml"
    config.write_text(CONFIG + "progress_regex: 'iteration\\s+(\\d+)'\nfail_regex: 'lm loss: nan'\n")
    table = orch("plan", "c.yaml", "MODE=train", cwd=campaign)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[-1] == "WATCH"
    assert "progress ~ /iteration\\s+(\\d+)/; fail ~ /lm loss" in table.stdout.splitlines()[1]  # cut to fit
    payload = json.loads(orch("plan", "c.yaml", "--json", cwd=campaign).stdout)["jobs"]
    assert payload[0]["fail_regex"] == "lm loss: nan"


def test_missing_job_name_line_is_warned_once_per_template(campaign: Path) -> None:
    (campaign / "templates" / "eval.sbatch").write_text("#!/bin/bash\necho {name}\n")
    result = orch("build", "c.yaml", cwd=campaign)
    assert result.returncode == 0
    warnings = [line for line in result.stderr.splitlines() if "job-name" in line]
    assert len(warnings) == 1 and "templates/eval.sbatch" in warnings[0]


BAD_INPUTS = {
    "undefined variable": ("wd: \"expr(1e-4 / {lr})\"", "wd: \"{nope}\"", ["'wd'", "{nope}"]),
    "reference cycle": ("wd: \"expr(1e-4 / {lr})\"", "wd: \"{x}\"\nx: \"{y}\"\ny: \"{wd}\"", ["cycle", "wd -> x -> y -> wd"]),
    "expression syntax": ("wd: \"expr(1e-4 / {lr})\"", "wd: \"expr(1e-4 / )\"", ["'wd'", "syntax"]),
    "attribute access": ("wd: \"expr(1e-4 / {lr})\"", "wd: \"expr(().__class__)\"", ["'wd'", "not allowed"]),
    "import": ("wd: \"expr(1e-4 / {lr})\"", "wd: \"expr(__import__('os'))\"", ["'wd'", "__import__"]),
    "runaway power": ("wd: \"expr(1e-4 / {lr})\"", "wd: \"expr(10**10**10)\"", ["'wd'", "too"]),
    "runaway string": ("wd: \"expr(1e-4 / {lr})\"", "wd: \"expr('x' * 10**9)\"", ["'wd'"]),
    "duplicate names": ('name: "{size}_lr{lr:.0e}_{MODE}"', 'name: "{size}_lr{lr:.0e}"', ["duplicated", "{MODE}"]),
    "yaml syntax": ("lr: [5e-3, 1e-3]", "lr: [5e-3, 1e-3", ["c.yaml:", "YAML"]),
    "missing template": ('template: "templates/{MODE}.{engine}"', 'template: "templates/nope.sbatch"', ["templates/nope.sbatch"]),
    "missing mandatory key": ('cmd: "sbatch {sbatch_script}"', "", ["'cmd'"]),
    "bad fail_regex": ("lr: [5e-3, 1e-3]", "lr: [5e-3, 1e-3]\nfail_regex: 'loss: (nan'", ["'fail_regex'", "regular expression"]),
    "bad progress_regex": ("lr: [5e-3, 1e-3]", "lr: [5e-3, 1e-3]\nprogress_regex: '[iteration'",
                           ["'progress_regex'"]),
    "bad probe timeout": ("lr: [5e-3, 1e-3]", "lr: [5e-3, 1e-3]\nprobe_timeout_secs: soon", ["'probe_timeout_secs'"]),
    "undefined in template": ("lr: [5e-3, 1e-3]", "lr: [5e-3, 1e-3]\nMODE_X: 1", []),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_a_short_message_and_writes_nothing(campaign: Path, case: str) -> None:
    old, new, expected = BAD_INPUTS[case]
    if case == "undefined in template":
        (campaign / "templates" / "train.sbatch").write_text(FORMAT_TEMPLATE + "echo {undefined_thing}\n")
        expected = ["templates/train.sbatch:5", "{undefined_thing}"]
    text = CONFIG.replace(old, new)
    assert text != CONFIG or case == "undefined in template"
    (campaign / "c.yaml").write_text(text)
    before = files_under(campaign)
    for command in ("build", "plan"):
        result = orch(command, "c.yaml", cwd=campaign)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        assert 1 <= len(result.stderr.strip().splitlines()) <= 2, result.stderr
        for fragment in expected:
            assert fragment in result.stderr, (fragment, result.stderr)
    assert files_under(campaign) == before


def test_missing_config_file(tmp_path: Path) -> None:
    result = orch("build", "nope.yaml", cwd=tmp_path)
    assert result.returncode == 2 and "nope.yaml" in result.stderr and "Traceback" not in result.stderr
    assert files_under(tmp_path) == set()


@pytest.mark.parametrize("command", ["plan", "check", "build", "run", "status"])
def test_a_misspelt_special_key_is_refused_by_every_command(campaign: Path, command: str) -> None:
    (campaign / "c.yaml").write_text(CONFIG.replace("termination_str:", "termination_srt:"))
    result = orch(command, "c.yaml", cwd=campaign)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "'termination_srt' (did you mean 'termination_str'?)" in result.stderr
    assert not (campaign / "generated").exists() and not (campaign / ".orch").exists()


def test_keys_nothing_reads_are_one_warning_and_keys_something_reads_are_not(campaign: Path) -> None:
    config = CONFIG + "unused_knob: 3\nrun_note: \"lr {lr}\"\nnote_user: \"{run_note}\"\n"
    (campaign / "c.yaml").write_text(config)
    result = orch("plan", "c.yaml", cwd=campaign)
    assert result.returncode == 0
    (warning,) = [line for line in result.stderr.splitlines() if "used by no template" in line]
    # engine and MODE name the template, size's option names are values, run_note is named by note_user.
    assert warning.endswith("2 key(s) are used by no template, no other value and no orch tool: note_user, unused_knob")
    # A template that mentions a key reads it, whatever its syntax.
    (campaign / "templates" / "train.sbatch").write_text(FORMAT_TEMPLATE + "# {unused_knob}\n")
    (campaign / "templates" / "eval.sbatch").write_text(FORMAT_TEMPLATE + "# {unused_knob} {note_user}\n")
    assert "used by no template" not in orch("plan", "c.yaml", cwd=campaign).stderr


def test_plan_warns_about_freeze_windows_that_cancel_healthy_silences(campaign: Path) -> None:
    assert "cancelled as frozen" not in orch("plan", "c.yaml", cwd=campaign).stdout  # the one-hour default
    (campaign / "c.yaml").write_text(CONFIG + "check_interval_secs: 60\nfreeze_secs: \"{check_interval_secs}\"\n")
    out = orch("plan", "c.yaml", cwd=campaign).stdout
    assert "warning: 8 job(s) are cancelled as frozen after 60s of silence" in out and "600 or more" in out


def test_near_misses_are_typos_and_cut_short_names_not_longer_names_of_their_own() -> None:
    from orchestrator.check.keys import key_report
    from orchestrator.jobs import Job

    keys = ["termination_srt", "freeze_sec", "check_interval", "start_condition_cmds", "template_dir", "run_name"]
    report = key_report([Job("j", "t", "s", "o", "c", {key: 1 for key in keys})], "", lambda path: frozenset())
    assert dict(report.near_misses) == {"termination_srt": "termination_str", "freeze_sec": "freeze_secs",
                                        "check_interval": "check_interval_secs",
                                        "start_condition_cmds": "start_condition_cmd"}
    assert report.unused == ["run_name", "template_dir"]


@pytest.mark.parametrize("width", [80, 200])
def test_plan_fits_the_terminal_and_names_what_it_left_out(tmp_path: Path, width: int) -> None:
    from monitor_campaign import link_project_files

    link_project_files(tmp_path, "configs/quickstart.yaml", "templates/quickstart")
    shown = subprocess.run([sys.executable, "-m", "orchestrator", "plan", "configs/quickstart.yaml"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": str(width)})
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines) <= width
    header = lines[0].split()
    assert header[:4] == ["NAME", "MODE", "PHASE", "GPU-H"]
    names = [line.split()[0] for line in lines[1:] if line and not line.startswith((" ", "(")) and "_" in line.split()[0]]
    assert "h32_lr0.01_pretrain_train" in names
    if width == 80:
        assert "column(s) left out at this width: SCRIPT, OUTPUT" in shown.stdout.replace("\n", " ")
    else:
        assert "SCRIPT" in header and "left out" not in shown.stdout
    wide = subprocess.run([sys.executable, "-m", "orchestrator", "plan", "configs/quickstart.yaml", "--wide"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": str(width)})
    assert "OUTPUT" in wide.stdout.splitlines()[0] and "left out" not in wide.stdout

