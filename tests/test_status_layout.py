"""`orch status` at 80 and 200 columns and `--watch` at 80 x 30: names wrap at word parts, every line fits,
the totals and the attention lines always show."""

from __future__ import annotations

import argparse

import pytest
from rich.console import Console

from orchestrator.cli.layout import word_parts
from orchestrator.cli.status import _render, _render_to_fit

NAMES = [f"h{h}_lr{lr}_{phase}_{mode}" for h in (32, 64, 128) for lr in ("0.01", "0.03")
         for phase in ("pretrain", "cd100", "cd200", "cd400", "cd800") for mode in ("train", "convert_eval")]


def rows(failed: int = 3) -> list[dict]:
    out = []
    for index, name in enumerate(NAMES):
        state = "failed" if index < failed else "running" if index < 10 else "waiting"
        out.append({"name": name, "state": state, "scheduler_id": str(1000 + index) if index < 10 else None,
                    "attempts": 1 if index < 10 else 0, "runtime_secs": 30.0 * index, "gpu_hours_spent": 0.5,
                    "gpu_hours_wasted": 0.5 if state == "failed" else 0.0, "gpu_hours_remaining": 1.0,
                    "unbounded": False, "last_line": f" iteration {index * 10:>6}/ 800 | lm loss: 3.{index:03d} |",
                    "reason": "exit code 1" if state == "failed" else "",
                    "needs_attention": "gave up after 3 failures" if state == "failed" else ""})
    return out


ARGS = argparse.Namespace(config="configs/quickstart.yaml", budget=None)


def rendered(renderable, width: int, height: int = 1000) -> list[str]:
    console = Console(width=width, height=height, record=True, force_terminal=False)
    console.print(renderable)
    return console.export_text().splitlines()


def name_cells(lines: list[str]) -> list[str]:
    """The names as the table shows them: the first column's pieces, joined row by row."""
    names, current = [], ""
    for line in lines:
        if not line.startswith("│"):
            continue
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells[1]:  # a state: a new row starts
            if current:
                names.append(current)
            current = cells[0]
        else:
            current += cells[0]
    return names + ([current] if current else [])


@pytest.mark.parametrize("width", [80, 200])
def test_every_line_fits_and_names_wrap_at_word_parts(width):
    lines = rendered(_render(ARGS, rows(), " on slurm; monitor: login1 pid 42", width), width)
    assert max(len(line) for line in lines) <= width
    assert name_cells(lines) == NAMES  # every name whole, in order
    for line in lines:
        if line.startswith("│"):
            piece = line.split("│")[1].strip()
            full = next(name for name in NAMES if piece in name)
            assert "".join(word_parts(full)).find(piece) >= 0
            parts = word_parts(full)
            # a piece is a run of whole word parts: it starts and ends on a part boundary
            bounds = {sum(len(p) for p in parts[:k]) for k in range(len(parts) + 1)}
            start = next(i for i in range(len(full)) if full.startswith(piece, i) and i in bounds)
            assert start + len(piece) in bounds, (piece, full)
    header = next(line for line in lines if "name" in line and "state" in line)
    assert "id" in header and "last output line" in header
    if width == 200:
        assert "GPU-h" in header and "left out" not in "\n".join(lines)


def test_watch_at_80_by_30_keeps_the_totals_and_attention_lines():
    console = Console(width=80, height=30, record=True, force_terminal=False)
    lines = rendered(_render_to_fit(console, ARGS, rows(failed=3), "", 80), 80, 30)
    assert len(lines) < 30
    text = "\n".join(lines)
    assert "60 jobs: 3 failed, 7 running, 50 waiting" in text
    assert "needs attention:" in text and text.count("gave up after 3 failures") == 3
    assert "more job(s) below this terminal's height" in text
    shown = name_cells(lines)
    assert shown[:3] == NAMES[:3]  # the jobs that need attention first, then the running ones
    assert set(shown[3:10]) <= set(NAMES[3:10])
