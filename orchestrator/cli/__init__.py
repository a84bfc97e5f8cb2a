"""The `orch` command line.

Every module in this package that defines `register(subparsers)` adds its own sub-command(s),
so each feature owns its CLI file and none of them edits this one. A sub-command's parser sets
`handler` (via `set_defaults`) to a function taking the parsed namespace and returning an exit code.

`orch COMMAND ...` imports only the module named after COMMAND when that module registers it (the
helpers call `orch ckpt pending` in every start condition of a campaign: start-up time is paid hundreds
of times per probe round); help, and commands whose module is named otherwise, import them all.
Command modules still import heavy dependencies (numpy, matplotlib, rich, jinja2) inside their
handlers, not at module level.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import re
import importlib.util
import pkgutil
import sys
from collections.abc import Sequence

from orchestrator import __version__
from orchestrator.errors import EXIT_USER_ERROR, UserError


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command, or with only `command` when its own module registers it."""
    parser, subparsers = _empty_parser()
    module = command.replace("-", "_") if command else ""
    if module.isidentifier():
        if _register_module(f"{__name__}.{module}", subparsers) and command in subparsers.choices:
            return parser
        parser, subparsers = _empty_parser()
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        _register_module(f"{__name__}.{module_info.name}", subparsers)
    return parser


class OrchParser(argparse.ArgumentParser):
    """argparse's parser, whose errors suggest the nearest command or option (sub-commands inherit the class)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        choice = re.match(r"argument ([^:]*): invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if choice:
            argument, word, known = choice.group(1), choice.group(2), re.findall(r"'([^']*)'", choice.group(3))
            message = (f"{message}{_suggestion(word, known)}" if argument.startswith("-")  # --scheduler foo
                       else f"unknown command {word!r}"
                       + (_suggestion(word, known) or f" (choose from {', '.join(map(repr, known))})"))
        unknown = re.match(r"unrecognized arguments: (.*)$", message)
        if unknown:
            options = [option for option in self._option_string_actions if option.startswith("--")]
            hints = [f"{word}{_suggestion(word.split('=')[0], options)}" for word in unknown.group(1).split()]
            message = "unrecognized arguments: " + " ".join(hints)
        super().error(message)


def _suggestion(word: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=2, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _innermost_parser(parser: argparse.ArgumentParser, words: Sequence[str]) -> argparse.ArgumentParser:
    """The (sub-)parser the words' leading command names lead to: its options are the ones that apply."""
    for word in words:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not actions or word not in actions[0].choices:
            break
        parser = actions[0].choices[word]
    return parser


def _empty_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = OrchParser(
        prog="orch",
        description="Declarative experiment orchestrator for LLM training campaigns on Slurm.",
    )
    parser.add_argument("--version", action="version", version=f"orch {__version__}")
    return parser, parser.add_subparsers(dest="command", metavar="COMMAND")


def _register_module(name: str, subparsers: argparse._SubParsersAction) -> bool:
    """Import a command module and let it add its sub-commands; False when there is no such module."""
    if importlib.util.find_spec(name) is None:
        return False
    register = getattr(importlib.import_module(name), "register", None)
    if register is not None:
        register(subparsers)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(words[0] if words and not words[0].startswith("-") else None)
    args, leftovers = parser.parse_known_args(argv)
    # argparse cannot take positional `KEY=V1,V2` filters after an option (`plan c.yaml --json MODE=train`).
    if leftovers and hasattr(args, "filters") and all("=" in a and not a.startswith("-") for a in leftovers):
        args.filters = [*args.filters, *leftovers]
    elif leftovers:
        _innermost_parser(parser, words).error(f"unrecognized arguments: {' '.join(leftovers)}")
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(handler(args) or 0)
    except UserError as error:
        print(f"orch: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `orch plan ... | head`: the reader left; not an error. Stop Python complaining at exit too.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
