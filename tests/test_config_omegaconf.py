"""OmegaConf semantics where byte-identical goldens cannot show them: errors, refusals, types, the loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.config import load_jobs
from orchestrator.errors import UserError

HEAD = (
    'template: t.sbatch\nname: "j{i}"\nsbatch_script: "s/{name}.sbatch"\noutput_file: "l/{name}.out"\n'
    'cmd: "sbatch {sbatch_script}"\ni: [1, 2]\n'
)


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(HEAD + body)
    (tmp_path / "t.sbatch").write_text("#SBATCH --job-name={name}\n")
    return path


def params(tmp_path: Path, body: str, **kwargs: object) -> dict:
    return load_jobs(write(tmp_path, body), **kwargs)[0].params  # type: ignore[arg-type]


def test_whole_value_interpolation_keeps_the_type(tmp_path: Path) -> None:
    found = params(tmp_path, 'n_nodes: 4\nn: "${n_nodes}"\nlr: 1e-3\nlr2: "${lr}"\nlabel: "x${n_nodes}"\n')
    assert (found["n"], found["lr2"], found["label"]) == (4, 0.001, "x4")


def test_interpolation_of_a_list_sweeps_it_again(tmp_path: Path) -> None:
    jobs = load_jobs(write(tmp_path, 'seeds: [1, 2, 3]\nseed: "${seeds}"\n'), fixes=["name=j{i}_{seeds}_{seed}"])
    assert len(jobs) == 2 * 3 * 3


def test_environment_resolver_and_its_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_TEST_SCRATCH", "/scratch/me")
    monkeypatch.delenv("ORCH_TEST_UNSET", raising=False)
    found = params(tmp_path, 'a: "${oc.env:ORCH_TEST_SCRATCH}/x"\nb: "${oc.env:ORCH_TEST_UNSET,fallback}"\n')
    assert (found["a"], found["b"]) == ("/scratch/me/x", "fallback")


def test_a_fix_is_seen_by_interpolations(tmp_path: Path) -> None:
    found = params(tmp_path, 'base: /a\ndata: "${base}/d"\n', fixes=["base=/b"])
    assert found["data"] == "/b/d"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('x: "${nowhere}/y"\n', r"c\.yaml:7: key 'x': \$\{nowhere\}: no key 'nowhere' in the config"),
        ('x: "${{lr}}"\n', r"c\.yaml:7: key 'x': token recognition error"),
        ("x: ???\ny: 1\n", r"c\.yaml:7: key 'x': Missing mandatory value: x \(\?\?\? asks for one: -f x=VALUE\)"),
        ('x: "${oc.nope:1}"\n', r"c\.yaml:7: key 'x': Unsupported interpolation type oc\.nope"),
    ],
)
def test_bad_interpolations_are_one_line_errors_naming_the_key(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        load_jobs(write(tmp_path, body))
    assert "\n" not in str(caught.value)


def test_a_real_duplicate_key_is_an_error_with_its_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"c\.yaml:8: YAML syntax error: found duplicate key lr"):
        load_jobs(write(tmp_path, "lr: 1\nlr: 2\n"))


def test_merge_key_overrides_are_not_duplicates(tmp_path: Path) -> None:
    found = params(tmp_path, "base: &base {a: 1, b: 2}\nother: &other {b: 5, c: 6}\nm:\n  <<: [*base, *other]\n  a: 9\n")
    assert (found["a"], found["b"], found["c"]) == (9, 2, 6)  # explicit key wins; the first source wins


def test_numbers_follow_omegaconf_not_yaml_or_python(tmp_path: Path) -> None:
    found = params(tmp_path, "a: .5e3\nb: 1_e3\nc: 1e3\nd: 1.e-2\ne: 2024-01-01\nf: 1_000\n")
    assert (found["a"], found["b"], found["c"], found["d"], found["e"], found["f"]) == (
        ".5e3", "1_e3", 1000.0, 0.01, "2024-01-01", 1000
    )


def test_brace_escapes_give_literal_braces(tmp_path: Path) -> None:
    found = params(tmp_path, 'LOG: "{{asctime}} {{levelname}}"\nREF: "{{i}}"\n')
    assert (found["LOG"], found["REF"]) == ("{asctime} {levelname}", "1")


def test_an_undefined_reference_is_still_an_error_beside_escapes(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"undefined variable \{nope\}"):
        load_jobs(write(tmp_path, 'LOG: "{{asctime}} {nope}"\n'))


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("expr([x for x in [1, 2]])", "comprehensions are not allowed"),
        ("expr([0] * 10**6)", "will not evaluate something that long"),
        ("expr(().__class__)", "attribute access"),
        ("expr([1, 2][5])", "IndexError: list index out of range"),
    ],
)
def test_list_expressions_stay_sandboxed(tmp_path: Path, expression: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        load_jobs(write(tmp_path, f'x: "{expression}"\n'))


def test_cli_typed_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "lr: 0.1\n")
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "c.yaml", "--json", "-F", "lr=1e-3", "-f", "seed=010"]) == 0
    out = capsys.readouterr().out
    assert '"lr": 0.001' in out and '"seed": "010"' in out
