"""The docs cannot drift from the tool: every `orch` command in README.md's and docs/'s code blocks parses with
orch's own parser (its command and every flag exist), and every JSON document has the keys docs/json.md lists."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def documented_commands() -> list[tuple[str, int, list[str]]]:
    """(file, line, words) of each `orch ...` line in a fenced code block, continuation lines joined."""
    found = []
    for path in DOCS:
        in_block, pending, start = False, "", 0
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.lstrip().startswith("```"):
                in_block, pending = not in_block, ""
                continue
            if not in_block:
                continue
            text = line.strip()
            if pending:
                text, pending = pending + " " + text, ""
            elif text.startswith("$ "):
                text = text[2:]
            if not text.startswith("orch "):
                continue
            if text.endswith("\\"):
                pending, start = text[:-1], start or number
                continue
            command = re.split(r"\s+(?:#|\||&&|>>?|2>)\s", text + " ")[0].replace("[", " ").replace("]", " ")
            # A synopsis (`orch ckpt done RUN_DIR ITER`, `[--min-iter N]`): each placeholder stands for a value.
            # `auto|slurm|local`: one of them; `...`: more of the same.
            words = ["1" if re.fullmatch(r"[A-Z][A-Z0-9_]*", word) else word.split("|")[0]
                     for word in shlex.split(command) if word != "..."]
            found.append((path.name, start or number, words))
            start = 0
    return found


COMMANDS = documented_commands()


def test_the_docs_show_commands_at_all():
    assert len(COMMANDS) > 30 and {words[1] for _, _, words in COMMANDS} >= {"run", "status", "fit", "plan", "lr"}


@pytest.mark.parametrize("where, line, words", COMMANDS, ids=[f"{f}:{n}" for f, n, _ in COMMANDS])
def test_every_documented_command_parses(where, line, words):
    from orchestrator.cli import build_parser

    arguments = words[1:]
    parser = build_parser(arguments[0] if arguments else None)
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            _, leftovers = parser.parse_known_args(arguments)
        except SystemExit as stop:
            pytest.fail(f"{where}:{line}: `{' '.join(words)}` does not parse: {errors.getvalue().strip()} ({stop})")
    assert all("=" in word and not word.startswith("-") for word in leftovers), (where, line, leftovers)


def documented_keys(section: str) -> list[set[str]]:
    """The first-column keys of each table under the docs/json.md section whose title starts with `section`."""
    text = (REPO / "docs" / "json.md").read_text()
    body = text.split(f"## `{section}")[1].split("\n## ")[0]
    tables, current = [], set()
    for row in body.splitlines():
        if row.startswith("| `"):
            current |= set(re.findall(r"`([^`]+)`", row.split("|")[1]))
        elif current:
            tables.append(current)
            current = set()
    return tables + ([current] if current else [])


def orch(root: Path, *args: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=root, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def campaign(tmp_path: Path) -> Path:
    (tmp_path / "t.sbatch").write_text("#!/bin/bash\n#SBATCH --job-name={name}\n#SBATCH --gpus=2\n"
                                       "#SBATCH --time=01:00:00\necho {lr}\n")
    (tmp_path / "c.yaml").write_text('template: t.sbatch\nname: "j_{PHASE}_{lr}"\nsbatch_script: "s/{name}.sbatch"\n'
                                     'output_file: "l/{name}.out"\ncmd: "sbatch {sbatch_script}"\nlr: [1e-3, 3e-3]\n'
                                     "PHASE:\n  - pretrain: {STEPS: 10}\n  - cooldown: {STEPS: 5}\n")
    return tmp_path


def test_plan_json_has_the_documented_keys_and_no_option_names(campaign):
    document = orch(campaign, "plan", "c.yaml", "--json")
    top, estimate, predicted = documented_keys("orch plan")
    assert set(document) == top
    job = document["jobs"][0]
    assert set(job["orch_estimate"]) == estimate
    assert job["orch_predicted"] is None  # nothing predicted here; tests/test_predict_campaign.py marks a branch
    assert job["PHASE"] == "pretrain" and "pretrain" not in job and job["STEPS"] == 10


def test_status_json_has_the_documented_keys(campaign):
    document = orch(campaign, "status", "c.yaml", "--json")
    top, totals_row_and_more, job = documented_keys("orch status")[0], None, documented_keys("orch status")[1]
    assert set(document) == top
    assert set(document["jobs"][0]) == job
    text = (REPO / "docs" / "json.md").read_text()
    totals_line = next(line for line in text.splitlines() if line.startswith("| `totals`"))
    assert set(document["totals"]) == set(re.findall(r"`([^`]+)`", totals_line.split("|")[2]))
    assert totals_row_and_more is None


def test_fit_and_lr_schedule_json_have_the_documented_keys(tmp_path):
    rows = ["params,tokens,loss"] + [f"{n},{d},{1.7 + 400 / n ** 0.34 + 410 / d ** 0.28:.6f}"
                                     for n in (1e7, 3e7, 1e8, 3e8, 1e9) for d in (1e9, 3e9, 1e10, 3e10)]
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n")
    fit = orch(tmp_path, "fit", "p.csv", "--loss-col", "loss", "--json", "--bootstrap", "0", "--budget", "1e21")
    assert set(fit) == documented_keys("orch fit")[0] and fit["version"] == 1
    schedule = orch(tmp_path, "lr", "schedule", "--framework", "megatron-lm", "--lr", "3e-4", "--train-iters", "100",
                    "--lr-decay-style", "cosine", "--json")
    assert set(schedule) == documented_keys("orch lr schedule")[0] and schedule["version"] == 1


def test_predict_json_has_the_documented_keys(tmp_path):
    lrs = [0.001 * min(1.0, step / 10) for step in range(60)]
    (tmp_path / "S.csv").write_text("curve,step,lr\n" + "".join(f"{name},{step},{lr * (1 if name == 'a' else 0.5)}\n"
                                                                for name in "ab" for step, lr in enumerate(lrs)))
    (tmp_path / "O.csv").write_text("curve,step,loss\n" + "".join(f"a,{step},{3 + 1 / step:.6f}\n" for step in range(10, 60, 5)))
    predicted = orch(tmp_path, "predict", "--schedules", "S.csv", "--observed", "O.csv", "--law", "tissue", "--json")
    documented = documented_keys("orch predict")
    assert set(predicted) == documented[0] and predicted["version"] == 1
    assert set(predicted["predictions"][0]) == documented[1] and len(predicted["predictions"]) == 59


def documented_sessions() -> list[tuple[str, int, str, list[str]]]:
    """(file, line, command, the output lines shown under it) of each `$ orch lr ...` in a console block that
    shows output. `...` alone elides lines; `...` inside a line stands for any text."""
    sessions = []
    for path in DOCS:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.startswith("$ orch lr ") or line.endswith("\\"):
                continue
            output = []
            for following in lines[number:]:
                if following.startswith(("$ ", "```")):
                    break
                output.append(following)
            if output:
                sessions.append((path.name, number, line[2:], output))
    return sessions


SESSIONS = documented_sessions()


def test_the_docs_show_lr_sessions():
    assert len(SESSIONS) >= 3


@pytest.mark.parametrize("where, line, command, shown", SESSIONS, ids=[f"{f}:{n}" for f, n, _, _ in SESSIONS])
def test_documented_output_is_what_the_command_prints(tmp_path, where, line, command, shown):
    for folder in ("configs", "templates", "examples"):
        (tmp_path / folder).symlink_to(REPO / folder)
    words = shlex.split(command.split(" | ")[0])
    result = subprocess.run([sys.executable, "-m", "orchestrator", *words[1:]], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    printed = result.stdout.splitlines()
    if " | tail -1" in command:
        printed = printed[-1:]
    for expected in shown:
        if expected.strip() == "...":
            continue
        pattern = ".*".join(re.escape(piece) for piece in expected.split("..."))
        assert any(re.fullmatch(pattern, actual) for actual in printed), f"{where}:{line}: {expected!r} not printed"
    assert re.fullmatch(".*".join(re.escape(p) for p in shown[-1].split("...")), printed[-1]), (where, line)
