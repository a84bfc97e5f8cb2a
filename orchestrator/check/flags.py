"""Megatron command lines in rendered job scripts, checked against the pinned parser's flags.

The flag schema is data: `orchestrator/data/megatron_flags/<framework>.json`, written by
`scripts/extract-megatron-flags.py` from a checkout of a named release (the file records repository,
version and commit). A Megatron invocation is a command whose program is a `pretrain_*.py` script (or a
name given with `--entry`); its arguments are the words after it, with `"${ARRAY[@]}"` expanded from the
script's own `ARRAY=( ... )` assignment. Words holding `$` are not known before the job runs: a flag
spelled that way is skipped, a value that way is not compared with the choices.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import re
import shlex
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from orchestrator.errors import UserError

FRAMEWORKS: tuple[str, ...] = ("megatron-lm", "megatron-deepspeed")
DEFAULT_ENTRIES: tuple[str, ...] = ("pretrain_*.py",)
_SHELL_OPERATORS = {";", "&&", "||", "|", "&", ">", ">>", "<", "2>&1", ")"}
_ARRAY_START = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)=\(\s*(.*)$")
_ARRAY_USE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\[@\]\}$")


@dataclass(frozen=True)
class FlagSchema:
    framework: str
    version: str
    commit: str
    flags: dict[str, dict[str, Any]]

    @property
    def label(self) -> str:
        return f"{self.framework} {self.version}"


def load_schema(framework: str, version: str | None = None, path: str | None = None) -> FlagSchema:
    """The shipped schema of `framework` (or the file at `path`); `version`, if given, must be the one it records."""
    if path is not None:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise UserError(f"--flag-schema {path}: cannot read it: {error}") from None
    else:
        if framework not in FRAMEWORKS:
            raise UserError(f"--framework {framework!r}: choose one of {', '.join(FRAMEWORKS)}")
        data = json.loads(resources.files("orchestrator").joinpath(f"data/megatron_flags/{framework}.json").read_text())
    schema = FlagSchema(data["framework"], data["version"], data["commit"], data["flags"])
    if version is not None and version not in (schema.version, schema.commit, schema.commit[:len(version)]):
        raise UserError(
            f"--megatron-version {version}: the flag schema is {schema.label} ({schema.commit[:8]}); make one for"
            f" {version} with scripts/extract-megatron-flags.py and pass it with --flag-schema"
        )
    return schema


@dataclass(frozen=True)
class Invocation:
    line: int
    entry: str
    arguments: list[str]


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines with backslash continuations joined, each with its first line number."""
    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append((start, pending + line))
        pending = ""
    if pending:
        lines.append((start, pending))
    return lines


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:
        return []


def _arrays(lines: list[tuple[int, str]]) -> dict[str, list[str]]:
    """Bash arrays assigned as `NAME=( ... )`, possibly over several lines."""
    arrays: dict[str, list[str]] = {}
    current: str | None = None
    collected: list[str] = []
    for _number, line in lines:
        if current is None:
            match = _ARRAY_START.match(line)
            if not match:
                continue
            current, line = match.group(1), match.group(2)
            collected = []
        body, closed = line, False
        if re.search(r"\)\s*(#.*)?$", line) and not line.strip().startswith("#"):
            body, closed = line[: line.rstrip().rfind(")")], True
        collected += _words(body)
        if closed:
            arrays[current], current = collected, None
    return arrays


def _commands(script: str) -> list[tuple[int, str]]:
    """The script cut into commands at unquoted newlines (quotes may span lines, as in `bash -c '...'`),
    backslash-newline joined, comments dropped; each with the line it starts on."""
    commands: list[tuple[int, str]] = []
    current: list[str] = []
    quote = ""
    line, start, index = 1, 1, 0
    while index < len(script):
        char = script[index]
        if quote:
            if char == quote:
                quote = ""
            elif char == "\\" and quote == '"' and index + 1 < len(script):
                current.append(char)
                index += 1
                char = script[index]
            current.append(char)
        elif char == "\\" and index + 1 < len(script):
            if script[index + 1] == "\n":
                current.append(" ")
                line += 1
            else:
                current += [char, script[index + 1]]
            index += 2
            continue
        elif char in "'\"":
            quote = char
            current.append(char)
        elif char == "#" and (not current or current[-1].isspace()):
            while index + 1 < len(script) and script[index + 1] != "\n":
                index += 1
        elif char == "\n":
            if "".join(current).strip():
                commands.append((start, "".join(current)))
            current, start = [], line + 1
        else:
            current.append(char)
        if char == "\n":
            line += 1
        index += 1
    if "".join(current).strip():
        commands.append((start, "".join(current)))
    return commands


@lru_cache(maxsize=64)
def _literal_part(pattern: str) -> str:
    """The longest text a name matching the glob must contain (`pretrain_*.py` -> `pretrain_`)."""
    return max(re.split(r"[*?\[\]]", pattern), key=len)


def megatron_invocations(script: str, entries: tuple[str, ...] = DEFAULT_ENTRIES) -> list[Invocation]:
    if not any(_literal_part(pattern) in script for pattern in entries):
        return []  # the common case, answered without parsing the shell (a big campaign has many scripts)
    arrays = _arrays(_logical_lines(script))
    found = []
    for number, command in _commands(script):
        words = _words(command)
        for index, word in enumerate(words):
            if any(fnmatch.fnmatch(Path(word).name, pattern) for pattern in entries):
                arguments: list[str] = []
                for argument in words[index + 1:]:
                    if argument in _SHELL_OPERATORS:
                        break
                    use = _ARRAY_USE.match(argument)
                    arguments += arrays.get(use.group(1), [argument]) if use else [argument]
                found.append(Invocation(number, word, arguments))
                break
    return found


def check_arguments(arguments: list[str], schema: FlagSchema) -> list[str]:
    """Problems with the flags of one invocation: unknown flags (with the closest known one), values off the choices."""
    problems = []
    known = schema.flags
    index = 0
    while index < len(arguments):
        word = arguments[index]
        index += 1
        if not word.startswith("--") or "$" in word.split("=", 1)[0]:
            continue
        name, has_inline, inline = word.partition("=")
        entry = known.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"unknown flag {name}{hint}")
            continue
        if not entry.get("takes_value", True):
            continue
        values = [inline] if has_inline else []
        if not has_inline:
            many = entry.get("nargs") in ("+", "*")
            while index < len(arguments) and not arguments[index].startswith("--"):
                values.append(arguments[index])
                index += 1
                if not many:
                    break
        choices = entry.get("choices")
        if choices:
            for value in values:
                if "$" not in value and value not in choices:
                    problems.append(f"{name} {value!r} is not one of {', '.join(choices)}")
    return problems
