"""Read a batch script's `#SBATCH` options the way sbatch reads them (pure; no Slurm needed).

From SchedMD/slurm src/sbatch/opt.c (`_opt_batch_script`, `get_argument`) @284c3b95f08a:
- a directive line starts with `#SBATCH` (or the old `#SLURM`) in its first column: an indented
  `#SBATCH` is a comment;
- reading stops at the first line that is neither blank nor a comment (the first command);
- each line splits into words like a shell would (quotes, backslash escapes), and an unescaped `#`
  ends the line's options;
- the words of all lines form one argument list for getopt_long, so a later option overrides an
  earlier one, and a long option may be abbreviated to any unambiguous prefix (`--gpus-per-n=4`);
- a `hetjob` word starts the next component of a heterogeneous job (only the first is read here).
Options given on the sbatch command line win over the script's.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

# The long options orch reads (with their short forms), and whether each takes a value.
_LONG_OPTIONS: Mapping[str, bool] = {
    "job-name": True, "output": True, "error": True, "time": True, "chdir": True, "open-mode": True,
    "nodes": True, "ntasks": True, "ntasks-per-node": True, "gpus": True, "gpus-per-node": True,
    "gpus-per-task": True, "gres": True, "partition": True, "account": True, "qos": True,
    "exclusive": False, "hold": False, "parsable": False, "requeue": False, "no-requeue": False, "exclude": True,
    "signal": True,
}
_SHORT_OPTIONS: Mapping[str, str] = {
    "-J": "job-name", "-o": "output", "-e": "error", "-t": "time", "-D": "chdir", "-N": "nodes",
    "-n": "ntasks", "-G": "gpus", "-p": "partition", "-A": "account", "-q": "qos", "-H": "hold", "-x": "exclude",
}
_SHORT_FLAGS = frozenset({"-H"})
# Every sbatch long option (Slurm 22.05+), to tell an abbreviation of ours from one of another option.
_OTHER_LONG_OPTIONS = (
    "acctg-freq", "array", "batch", "bb", "bbf", "begin", "cluster-constraint", "clusters", "comment",
    "constraint", "container", "contiguous", "core-spec", "cores-per-socket", "cpu-freq", "cpus-per-gpu",
    "cpus-per-task", "deadline", "delay-boot", "dependency", "distribution", "export",
    "export-file", "extra-node-info", "get-user-env", "gid", "gpu-bind", "gpu-freq", "gres-flags", "hint",
    "ignore-pbs", "input", "kill-on-invalid-dep", "licenses", "mail-type", "mail-user", "mcs-label", "mem",
    "mem-bind", "mem-per-cpu", "mem-per-gpu", "mincpus", "network", "nice", "no-kill", "nodefile",
    "nodelist", "ntasks-per-core", "ntasks-per-gpu", "ntasks-per-socket", "oversubscribe", "overcommit",
    "power", "priority", "profile", "propagate", "quiet", "reboot", "reservation",
    "sockets-per-node", "spread-job", "switches", "test-only", "thread-spec", "threads-per-core",
    "time-min", "tmp", "uid", "usage", "use-min-nodes", "verbose", "version", "wait", "wait-all-nodes",
    "wckey", "wrap",
)
_ALL_LONG = tuple(_LONG_OPTIONS) + _OTHER_LONG_OPTIONS


# A line that may set nodes, tasks, GPUs or the time limit (any unambiguous abbreviation included).
_RESOURCE_WORD = re.compile(r"(?:^|\s)(?:-[NGtnp]|--(?:no|nt|gp|gr|ti|pa)|hetjob|packjob)", re.IGNORECASE)


@lru_cache(maxsize=4096)
def _line_words(text: str) -> tuple[str, ...] | None:
    """The words of one directive line after the magic word; None: the next hetjob component starts."""
    try:
        words = shlex.split(text, comments=True, posix=True)
    except ValueError:
        return ()  # unmatched quote: sbatch itself refuses the script; nothing to read here
    return None if words and words[0].lower() in ("hetjob", "packjob") else tuple(words)


# The leading block of blank and comment lines (directives included), before the first command.
_OPTION_AT_END = re.compile(r"(?:^|\s)(?:-[A-Za-z]|--[\w-]+)\s*(?:#.*)?$")
_HEAD = re.compile(r"(?:[ \t]*(?:#[^\n]*)?\n)*(?:[ \t]*#[^\n]*\Z)?")
_DIRECTIVE = re.compile(r"^#(?:SBATCH|SLURM)([^\n]*)", re.MULTILINE)


def directive_lines(script_text: str, resources_only: bool = False) -> tuple[str, ...]:
    """The text after the magic word of each directive line sbatch reads; with `resources_only`, only
    lines that may set resources (the others, e.g. a `--job-name` that differs in every job, are
    dropped before any shell-like parsing: this runs for 10^5 jobs in `orch plan`)."""
    head = script_text[: _HEAD.match(script_text).end()]  # type: ignore[union-attr]
    lines = _DIRECTIVE.findall(head)
    if resources_only:
        kept, value_follows = [], False
        for line in lines:
            if value_follows or _RESOURCE_WORD.search(line):
                kept.append(line)
                # `#SBATCH -N` with its value on the next line: sbatch joins all lines into one argv.
                value_follows = bool(_OPTION_AT_END.search(line))
        lines = kept
    return tuple(lines)


def directive_words(lines: Iterable[str]) -> list[str]:
    words: list[str] = []
    for line in lines:
        line_words = _line_words(line)
        if line_words is None:
            break
        words.extend(line_words)
    return words


def _long_name(prefix: str) -> str | None:
    """getopt_long's rule: an exact name, or a prefix of exactly one name."""
    if prefix in _ALL_LONG:
        return prefix if prefix in _LONG_OPTIONS else None
    matches = [name for name in _ALL_LONG if name.startswith(prefix)]
    return matches[0] if len(matches) == 1 and matches[0] in _LONG_OPTIONS else None


def parse_options(words: Sequence[str]) -> dict[str, str]:
    """Options orch reads from an argument list (later ones win); flags map to ""."""
    options: dict[str, str] = {}
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if word.startswith("--"):
            key, equals, value = word[2:].partition("=")
            name = _long_name(key)
            if name is None:
                continue
            if _LONG_OPTIONS[name] and not equals and index < len(words):
                value, index = words[index], index + 1
            options[name] = value if _LONG_OPTIONS[name] else ""
        elif word.startswith("-") and len(word) >= 2:
            short = word[:2]
            name = _SHORT_OPTIONS.get(short)
            if name is None:
                continue
            if short in _SHORT_FLAGS:
                options[name] = ""
                continue
            value = word[2:]
            if not value and index < len(words):
                value, index = words[index], index + 1
            options[name] = value
    return options


def script_options(script_text: str, command_line: Iterable[str] = (), resources_only: bool = False) -> dict[str, str]:
    """The script's `#SBATCH` options, overridden by those on the sbatch command line.

    `resources_only`: read only what sets nodes, tasks, GPUs and the time limit (fast, for estimates).
    """
    return options_from(directive_lines(script_text, resources_only), command_line)


def options_from(lines: Iterable[str], command_line: Iterable[str] = ()) -> dict[str, str]:
    """Options from directive lines (`directive_lines`) and the sbatch command line, which wins."""
    return {**parse_options(directive_words(lines)), **parse_options(list(command_line))}


def sbatch_command_options(command: str, script_path: str) -> list[str]:
    """The option words of an `sbatch ... SCRIPT` command line (those before the script), else []."""
    try:
        words = shlex.split(command)
    except ValueError:
        return []
    if not words or not words[0].endswith("sbatch"):
        return []
    options = words[1:]
    if script_path in options:
        options = options[: options.index(script_path)]
    return options


_TIME = re.compile(r"^(?:(?P<days>\d+)-)?(?P<rest>\d+(?::\d+){0,2})$")


def signal_lead_secs(text: str) -> float:
    """How long before its time limit a job is signalled by `--signal=[{R|B}:]<sig_num>[@sig_time]` (sbatch(1):
    sig_time defaults to 60 s; Slurm may signal up to 60 s earlier still); 0 for no such option."""
    text = text.strip()
    if not text:
        return 0.0
    _, at, lead = text.partition("@")
    if not at:
        return 60.0
    try:
        return float(int(lead))
    except ValueError:
        return 0.0  # sbatch refuses it in its own words


def parse_time_limit(text: str) -> float | None:
    """Slurm's --time formats -> seconds; None for no limit. Raises ValueError for other text.

    `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`; `UNLIMITED`/`INFINITE`/`0` mean no limit
    (SchedMD/slurm src/common/parse_time.c `time_str2secs` @284c3b95).
    """
    text = text.strip()
    if text.upper() in ("", "UNLIMITED", "INFINITE"):
        return None
    match = _TIME.match(text)
    if not match:
        raise ValueError(f"not a Slurm time (M, M:S, H:M:S, D-H, D-H:M or D-H:M:S): {text!r}")
    parts = [int(p) for p in match["rest"].split(":")]
    if match["days"] is not None:
        hours, minutes, seconds = (parts + [0, 0])[:3]
        total = int(match["days"]) * 86400 + hours * 3600 + minutes * 60 + seconds
    elif len(parts) == 1:
        total = parts[0] * 60
    elif len(parts) == 2:
        total = parts[0] * 60 + parts[1]
    else:
        total = parts[0] * 3600 + parts[1] * 60 + parts[2]
    return float(total) if total > 0 else None
