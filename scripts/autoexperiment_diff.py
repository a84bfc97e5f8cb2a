"""Differential test against AutoExperiment itself: random configs, both tools' `build`, the outputs compared.

    python scripts/autoexperiment_diff.py --autoexperiment /path/to/venv/bin/autoexperiment --count 400

The configs mix every construct the two tools share: sweeps, crossed mappings, named options, format
specs, `expr()` (lists included), OmegaConf interpolation (`${key}`, `${a.b}`, `${.x}`, `${oc.env:...}`,
escapes), literal braces, YAML anchors and merge keys, odd number spellings and `-f` fixes. For each
config it reports one of: same (both built, every script byte-identical), differ, orch refused what
AutoExperiment accepted, AutoExperiment refused (not counted against orch). `--keep DIR` keeps the
cases that differ. Install AutoExperiment with `scripts/record-autoexperiment-goldens.sh --venv-only`.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TEMPLATE = "#!/bin/bash\n#SBATCH --job-name={name}\n#SBATCH --output={output_file}\n"

SCALARS = ["1", "2", "10", "0.5", "1e-3", "5e-4", "1.e-2", ".5e3", "1_000", "1_e3", "1_.5e3", "1E3", "3.0",
           "true", "no", "yes", "010", "0x1f", "abc", "'007'", '"a b"', "2024-01-01", "+1", "-2.5e+3"]
VALUES = ["{a}", "{b}", "{a}_{b}", "x{c}", "{{lit}}", "{{a}}", "${a}", "${g.h}", "${oc.env:HOME}",
          "${oc.env:ORCH_NOT_SET,fallback}", "'\\${SLURM_JOB_ID}'", "expr({a} * 2)", "expr(sum([{a}, 1]))",
          "expr(max([{a}, 3]))", "expr(len([{a}, {a}]))", "expr(sorted([3, {a}])[0])", "expr(({a}, 1)[1])",
          "{a:03d}", "{b!r}", "/p/{0000..0009}.tar", "step \\\\d{3}", "{a}/${g.h}", "${.a}", "{{a}} {b}",
          "{{x}}-{a}", "{{{{a}}}}"]


def _scalar(rng: random.Random) -> str:
    return rng.choice(SCALARS)


def random_config(rng: random.Random) -> tuple[str, list[str]]:
    """(YAML text, -f fixes) of one random campaign."""
    name = "job{i}_{a}_{b}_{c}"
    lines = [
        "template: t.sbatch",
        'sbatch_script: "out/{name}.sbatch"',
        'output_file: "logs/{name}.out"',
        'cmd: "sbatch {sbatch_script}"',
        "i: [" + ", ".join(str(n) for n in range(rng.randint(1, 3))) + "]",
    ]
    lines.append(f"a: {rng.choice(['1', '2', '[1, 2]', '5', '[3, 4, 5]'])}")
    lines.append(f"b: {rng.choice(SCALARS[:12] + ['[x, y]'])}")
    lines.append("g:\n  h: " + _scalar(rng))
    if rng.random() < 0.4:
        lines.append("base: &base\n  k1: 1\n  k2: two")
        lines.append("derived:\n  <<: *base\n  k2: " + _scalar(rng))
    if rng.random() < 0.3:
        name += "_{opt}"
        lines.append("opt:\n  - small: {w: 1, c: " + _scalar(rng) + "}\n  - large: {w: 2, c: " + _scalar(rng) + "}")
    else:
        lines.append("c: " + _scalar(rng))
    for index in range(rng.randint(1, 4)):
        value = rng.choice(VALUES)
        if index and rng.random() < 0.3:  # refer to an earlier value (its escapes, its braces)
            value = f"{{v{rng.randrange(index)}}}/" + rng.choice(["{a}", "x", "{{b}}"])
        quoted = value if value.startswith("'") else '"' + value.replace('"', '\\"') + '"'
        lines.append(f"v{index}: {quoted}")
        if value in ("${a}", "${.a}"):  # may name a list: a second sweep, told apart in the name
            name += f"_{{v{index}}}"
    lines.insert(1, f'name: "{name}"')
    fixes = []
    if rng.random() < 0.3:
        fixes.append(f"c={rng.choice(['1e-3', '010', 'yes', '7', 'x y'])}")
    return "\n".join(lines) + "\n", fixes


def _template(config_text: str) -> str:
    keys = [line.split(":")[0] for line in config_text.splitlines() if line and not line.startswith(" ")]
    shown = [key for key in keys if key not in {"template", "cmd"}]
    return TEMPLATE + "".join(f"{key}={{{key}}}\n" for key in shown)


def _build(command: list[str], directory: Path) -> tuple[bool, dict[str, bytes], str]:
    result = subprocess.run(command, cwd=directory, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HOME": "/home/orch-diff"})
    out = directory / "out"
    files = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    return result.returncode == 0, files, (result.stderr.strip().splitlines() or [""])[-1]


def compare(config_text: str, fixes: list[str], autoexperiment: str, orch: str, keep: Path | None, label: str) -> str:
    with tempfile.TemporaryDirectory() as scratch:
        outcomes = []
        for tool, command in (("ae", [autoexperiment, "build"]), ("orch", [orch, "build"])):
            directory = Path(scratch) / tool
            directory.mkdir()
            (directory / "c.yaml").write_text(config_text)
            (directory / "t.sbatch").write_text(_template(config_text))
            flags = [part for fix in fixes for part in ("-f", fix)]
            outcomes.append(_build(command + ["c.yaml", *flags], directory))
        (ae_ok, ae_files, _), (orch_ok, orch_files, orch_error) = outcomes
        if not ae_ok:
            verdict = "autoexperiment refused"
        elif not orch_ok:
            verdict = "orch refused"
        else:
            verdict = "same" if ae_files == orch_files else "differ"
        if keep is not None and verdict in {"differ", "orch refused"}:
            case = keep / label
            shutil.copytree(Path(scratch) / "ae", case / "ae")
            shutil.copytree(Path(scratch) / "orch", case / "orch", ignore=shutil.ignore_patterns(".orch"))
            (case / "fixes.txt").write_text("\n".join(fixes) + "\n")
            (case / "orch_error.txt").write_text(orch_error + "\n")
        return verdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--autoexperiment", required=True, help="the `autoexperiment` executable")
    parser.add_argument("--orch", default=shutil.which("orch") or "orch", help="the `orch` executable")
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="keep differing cases here")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tally: dict[str, int] = {}
    for index in range(args.count):
        text, fixes = random_config(rng)
        verdict = compare(text, fixes, args.autoexperiment, args.orch, args.keep, f"case{index:04d}")
        tally[verdict] = tally.get(verdict, 0) + 1
    accepted = args.count - tally.get("autoexperiment refused", 0)
    print(f"{args.count} configs, AutoExperiment accepted {accepted}: " +
          ", ".join(f"{name} {count}" for name, count in sorted(tally.items())))
    return 0 if tally.get("differ", 0) == 0 and tally.get("orch refused", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
