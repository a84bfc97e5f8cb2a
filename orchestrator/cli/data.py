"""`orch data mix`: blend weighted data-file lists into one (mixtures for continued pre-training)."""

from __future__ import annotations

import argparse
import sys

from orchestrator.errors import EXIT_USER_ERROR
from orchestrator.planning import data_mix, write_atomically


def run_mix(args: argparse.Namespace) -> int:
    entries = data_mix.blend_files(data_mix.parse_mix_arguments(args.input))
    text = data_mix.format_mixture(entries)
    if args.out:
        write_atomically(args.out, text)
        print(f"# wrote {len(entries)} entries to {args.out}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="data-file list tools (mixtures)")
    commands = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    parser.set_defaults(handler=lambda _args: (parser.print_help(), EXIT_USER_ERROR)[1])

    mix = commands.add_parser(
        "mix",
        help="blend data-file lists with global weights",
        description="Each LIST has lines 'weight prefix corpus'. Within a list the weights are normalised to 1, "
        "then scaled by the list's W / sum of all W. Output: 'weight prefix corpus', six decimals.",
    )
    mix.add_argument(
        "--input", nargs="+", required=True, metavar="W LIST", help="pairs of global weight and list file: W1 LIST1 W2 LIST2 ..."
    )
    mix.add_argument("--out", metavar="FILE", help="write the blended list here (default: print it)")
    mix.set_defaults(handler=run_mix)
