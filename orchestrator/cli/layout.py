"""Tables that fit the terminal: which columns to show at a width, and names wrapped at their word parts.

Every table command (plan, status, results) keeps its important columns at any width and leaves the rest
out, saying which ones and how to see them (`--wide`, the JSON or the CSV), instead of squeezing every
column to one character. Names wrap at `_`, `-`, `.` and `/`, never inside a word part unless one part alone
is wider than the column.
"""

from __future__ import annotations

import os
import re
import shutil
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

WIDE = 10_000  # "no limit": what --wide and a pipe without COLUMNS get
_BREAK_AFTER = re.compile(r"(?<=[_\-./])")


def output_width(wide: bool = False, stream_is_terminal: bool | None = None) -> int:
    """The columns to fit: unlimited with --wide, else COLUMNS or the terminal's; a pipe without COLUMNS is
    unlimited (a file or `grep` wants whole lines)."""
    if wide:
        return WIDE
    if os.environ.get("COLUMNS", "").isdigit():
        return int(os.environ["COLUMNS"])
    terminal = os.isatty(1) if stream_is_terminal is None else stream_is_terminal
    return shutil.get_terminal_size((WIDE, 24)).columns if terminal else WIDE


def output_height(default: int = 24) -> int:
    if os.environ.get("LINES", "").isdigit():
        return int(os.environ["LINES"])
    return shutil.get_terminal_size((80, default)).lines


def word_parts(text: str) -> list[str]:
    """`h32_lr0.01_pretrain_train` -> `h32_`, `lr0.`, `01_`, `pretrain_`, `train` (breaks after _ - . /)."""
    return [part for part in _BREAK_AFTER.split(text) if part]


def longest_part(text: str) -> int:
    return max((len(part) for part in word_parts(text)), default=0)


def wrap_name(text: str, width: int) -> list[str]:
    """Lines of at most `width` characters, broken after word parts; a part wider than `width` is cut."""
    lines: list[str] = []
    line = ""
    for part in word_parts(text):
        while len(part) > width:  # a part longer than the column: cut it, nothing else fits
            if line:
                lines.append(line)
                line = ""
            lines.append(part[:width])
            part = part[width:]
        if len(line) + len(part) > width:
            lines.append(line)
            line = part
        else:
            line += part
    if line or not lines:
        lines.append(line)
    return lines


@dataclass
class Column:
    header: str
    cells: list[str]
    priority: int = 1
    """0: always shown; others join by increasing priority while they fit."""
    wraps: bool = False
    """May narrow to its longest word part, wrapping (names)."""
    shrinks: bool = False
    """May be cut to what is left, with an ellipsis (a log line, a command); never below `min_width`."""
    min_width: int = 8

    @property
    def natural(self) -> int:
        return max([len(self.header), *(len(cell) for cell in self.cells)])

    @property
    def narrowest(self) -> int:
        if self.wraps:
            return max(len(self.header.split()[0]) if self.header else 1,
                       min(self.natural, max([1, *(longest_part(cell) for cell in self.cells)])))
        if self.shrinks:
            return min(self.natural, max(self.min_width, len(self.header)))
        return self.natural


@dataclass
class Fitted:
    columns: list[Column]
    """In their original order."""
    widths: list[int]
    left_out: list[str]
    """Headers of the columns that did not fit."""


def fit_columns(columns: Sequence[Column], width: int, gap: int) -> Fitted:
    """Choose the columns for `width` (`gap` characters between columns and around them) and their widths.

    Columns join by priority at their narrowest; then the room left widens the wrapping and shrinking ones
    back towards their natural width, the first in order first."""
    naturals = [c.natural for c in columns]
    if sum(naturals) + gap * len(columns) <= width:  # the common case (a pipe, --wide): nothing to choose
        return Fitted(list(columns), naturals, [])
    chosen: list[Column] = []
    used = 0
    for column in sorted(columns, key=lambda c: c.priority):  # sorted() is stable: same priority, original order
        need = column.narrowest + gap
        if column.priority == 0 or used + need <= width:
            chosen.append(column)
            used += need
    ordered = [c for c in columns if any(c is chosen_one for chosen_one in chosen)]
    widths = [c.narrowest for c in ordered]
    room = max(0, width - used)
    for index, column in enumerate(ordered):
        extra = min(room, column.natural - widths[index])
        widths[index] += extra
        room -= extra
    left_out = [c.header for c in columns if not any(c is chosen_one for chosen_one in chosen)]
    return Fitted(ordered, widths, left_out)


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def plain_table(fitted: Fitted, gap: str = "  ") -> list[str]:
    """Text lines of the table: wrapping columns over several lines, shrinking ones cut with an ellipsis."""
    lines = [gap.join(cut(c.header, w).ljust(w) for c, w in zip(fitted.columns, fitted.widths)).rstrip()]
    for row in range(len(fitted.columns[0].cells) if fitted.columns else 0):
        cells = [[c.cells[row]] if len(c.cells[row]) <= w else wrap_name(c.cells[row], w) if c.wraps
                 else [cut(c.cells[row], w)] for c, w in zip(fitted.columns, fitted.widths)]
        for index in range(max(len(cell) for cell in cells)):
            lines.append(gap.join((cell[index] if index < len(cell) else "").ljust(w)
                                  for cell, w in zip(cells, fitted.widths)).rstrip())
    return lines


def left_out_note(fitted: Fitted, how: str) -> str:
    """One line on what did not fit and where to see it ("" when everything fitted)."""
    if not fitted.left_out:
        return ""
    return f"({len(fitted.left_out)} column(s) left out at this width: {', '.join(fitted.left_out)}; {how})"


def wrap_text(text: str, width: int) -> str:
    """Lines longer than `width` folded at spaces, continuations indented two more than the line."""
    if width >= WIDE:
        return text
    out = []
    for line in text.splitlines():
        if len(line) <= width:
            out.append(line)
            continue
        indent = " " * (len(line) - len(line.lstrip()))
        out.append(textwrap.fill(line.strip(), width, initial_indent=indent, subsequent_indent=indent + "  ",
                                 break_on_hyphens=False))
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")
