"""The `orch` command line.

Every module in this package that defines `register(subparsers)` adds its own sub-command(s),
so each feature owns its CLI file and none of them edits this one. A sub-command's parser sets
`handler` (via `set_defaults`) to a function taking the parsed namespace and returning an exit code.

Command modules must import heavy dependencies (numpy, matplotlib, rich, jinja2) inside their
handlers, not at module level: every `orch` call imports every command module.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from orchestrator import __version__
from orchestrator.errors import EXIT_USER_ERROR, UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orch",
        description="Declarative experiment orchestrator for LLM training campaigns on Slurm.",
    )
    parser.add_argument("--version", action="version", version=f"orch {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, leftovers = parser.parse_known_args(argv)
    # argparse cannot take positional `KEY=V1,V2` filters after an option (`plan c.yaml --json MODE=train`).
    if leftovers and hasattr(args, "filters") and all("=" in a and not a.startswith("-") for a in leftovers):
        args.filters = [*args.filters, *leftovers]
    elif leftovers:
        parser.error(f"unrecognized arguments: {' '.join(leftovers)}")
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
