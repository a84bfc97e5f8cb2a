"""Data mixtures (`orch data mix`, `write_job_mixture`): expected weights computed by hand."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from orchestrator.cli import main as orch_main
from orchestrator.errors import UserError
from orchestrator.planning.data_mix import (
    DataFile,
    blend,
    blend_files,
    format_mixture,
    parse_mix_arguments,
    read_data_list,
    JobMixture,
    job_mixture_inputs,
    write_job_mixture,
)


@pytest.fixture
def lists(tmp_path: Path) -> tuple[Path, Path]:
    web = tmp_path / "web.txt"
    web.write_text("# phase-1 web data\n2 /data/web/a_text_document web\n\n6 /data/web/b_text_document web\n")
    papers = tmp_path / "papers.txt"
    papers.write_text("0.5 /data/papers/arxiv_text_document arxiv\n")
    return web, papers


def test_blend_normalises_each_list_then_scales_by_its_global_weight(lists: tuple[Path, Path]) -> None:
    web, papers = lists
    # Global 3:1 -> web 0.75, papers 0.25. Within web 2:6 -> 0.25, 0.75 -> 0.1875, 0.5625. Papers' 0.5 -> 1 -> 0.25.
    entries = blend_files([(3, str(web)), (1, str(papers))])
    assert [(e.weight, e.prefix, e.corpus) for e in entries] == [
        (0.1875, "/data/web/a_text_document", "web"),
        (0.5625, "/data/web/b_text_document", "web"),
        (0.25, "/data/papers/arxiv_text_document", "arxiv"),
    ]
    assert sum(e.weight for e in entries) == pytest.approx(1)


def test_output_has_six_decimals() -> None:
    # Weights 1:2 in one list: 1/3 and 2/3.
    text = format_mixture(blend([(1.0, [DataFile(1, "p1", "c"), DataFile(2, "p2", "c")])]))
    assert text == "0.333333 p1 c\n0.666667 p2 c\n"


def test_zero_global_weight_keeps_lines_at_zero(lists: tuple[Path, Path]) -> None:
    web, papers = lists
    text = format_mixture(blend_files([(1, str(web)), (0, str(papers))]))
    assert text.splitlines() == ["0.250000 /data/web/a_text_document web", "0.750000 /data/web/b_text_document web",
                                 "0.000000 /data/papers/arxiv_text_document arxiv"]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1 a c\n\nabc b c\n", r":3: weight 'abc' is not a number"),
        ("1 a c\n-1 b c\n", r":2: weight must be a non-negative number, got -1"),
        ("1 a c\n1 b\n", r":2: expected 'weight prefix corpus', got '1 b'"),
        ("1 a c d\n", r":1: expected 'weight prefix corpus'"),
        ("0 a c\n0 b c\n", "the weights sum to 0"),
        ("# only a comment\n", "has no entries"),
        ("nan a c\n", r":1: weight must be a non-negative number"),
    ],
)
def test_malformed_list_names_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(UserError, match=message) as caught:
        read_data_list(path)
    assert str(caught.value).startswith(str(path))


def test_missing_list_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"missing\.txt: cannot read data file list"):
        read_data_list(tmp_path / "missing.txt")


def test_command_line_pairs() -> None:
    assert parse_mix_arguments(["3", "a.txt", "1", "b.txt"]) == [(3.0, "a.txt"), (1.0, "b.txt")]
    with pytest.raises(UserError, match="got 3 values"):
        parse_mix_arguments(["3", "a.txt", "1"])
    with pytest.raises(UserError, match="--input pair 2: global weight 'x' is not a number"):
        parse_mix_arguments(["3", "a.txt", "x", "b.txt"])
    with pytest.raises(UserError, match="global weights must be non-negative and at least one positive"):
        blend([(0.0, [DataFile(1, "p", "c")])])


def test_orch_data_mix_writes_out(lists: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    web, papers = lists
    out = tmp_path / "mix" / "blend.txt"
    assert orch_main(["data", "mix", "--input", "1", str(web), "1", str(papers), "--out", str(out)]) == 0
    # 1:1 -> web lines 0.5*(0.25, 0.75), papers 0.5.
    assert out.read_text() == (
        "0.125000 /data/web/a_text_document web\n0.375000 /data/web/b_text_document web\n0.500000 /data/papers/arxiv_text_document arxiv\n"
    )
    assert orch_main(["data", "mix", "--input", "1", str(tmp_path / "nope.txt")]) == 2
    assert "nope.txt: cannot read data file list" in capsys.readouterr().err


def _mixture(sources: dict, mix: dict, **params) -> JobMixture:
    return job_mixture_inputs("j", {"data_sources": sources, "data_mix": mix, **params})


def test_write_job_mixture(lists: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    web, papers = lists
    sources = {"web": str(web), "papers": str(papers), "unused": str(tmp_path / "never-read.txt")}
    out = tmp_path / "job" / "mix.txt"
    write_job_mixture(_mixture(sources, {"web": 0.8, "papers": "0.2"}), out)  # "{VAR}" weights arrive as text
    # web 0.8*(0.25, 0.75) = 0.2, 0.6; papers 0.2.
    assert [line.split()[0] for line in out.read_text().splitlines()] == ["0.200000", "0.600000", "0.200000"]
    assert capsys.readouterr().err == ""


def test_weights_must_sum_to_one_beyond_rounding(lists: tuple[Path, Path]) -> None:
    web, papers = lists
    sources = {"web": str(web), "papers": str(papers)}
    with pytest.raises(UserError, match=r"job j: data_mix weights sum to 4, not 1 \(web=3, papers=1\)"):
        _mixture(sources, {"web": 3, "papers": 1})
    assert _mixture(sources, {"web": 0.333333, "papers": 0.666667}).weights["web"] == 0.333333


def test_write_job_mixture_bad_config(lists: tuple[Path, Path], tmp_path: Path) -> None:
    web, _ = lists
    with pytest.raises(UserError, match=r"data_mix\.code: no such source in data_sources \(known: web\)"):
        _mixture({"web": str(web)}, {"web": 0.5, "code": 0.5})
    with pytest.raises(UserError, match=r"data_mix\.web: weight must be a number, got 'half'"):
        _mixture({"web": str(web)}, {"web": "half"})
    with pytest.raises(UserError, match=r"data_mix\.web: weight must be a non-negative number"):
        _mixture({"web": str(web)}, {"web": -1})


@pytest.fixture
def stages(tmp_path: Path) -> dict[str, str]:
    """D0..D3, one list each with one prefix (stage k's data is the k-th source after D0)."""
    sources = {}
    for index in range(4):
        path = tmp_path / f"d{index}.txt"
        path.write_text(f"1 /data/d{index}_text_document d{index}\n")
        sources[f"D{index}"] = str(path)
    return sources


def test_buffer_is_the_union_of_earlier_stages(stages: dict[str, str], tmp_path: Path) -> None:
    mixture = _mixture(stages, {"D0": 0.05, "D3": 0.48, "BUFFER": 0.47}, data_stage=3)  # Mix B at stage 3
    assert mixture.buffer == ("D1", "D2")
    out = tmp_path / "mix.txt"
    write_job_mixture(mixture, out)
    assert out.read_text() == ("0.050000 /data/d0_text_document d0\n0.480000 /data/d3_text_document d3\n"
                               "0.235000 /data/d1_text_document d1\n0.235000 /data/d2_text_document d2\n")
    named = _mixture(stages, {"D0": 0.33, "D2": 0.33, "BUFFER": 0.34}, data_stage="2", data_buffer=["D1"])
    assert named.buffer == ("D1",)


@pytest.mark.parametrize(("mix", "params", "message"), [
    ({"D0": 0.5, "BUFFER": 0.5}, {"data_stage": 2, "data_buffer": ["D1", "D3"]}, "data_buffer: D3 is stage 3, not a stage before 2"),
    ({"D0": 0.5, "D3": 0.5}, {"data_stage": 2}, "data_mix.D3: data of stage 3 in a stage-2 job"),
    ({"D1": 0.5, "BUFFER": 0.5}, {"data_stage": 1}, "data_mix.BUFFER: stage 1 has no earlier stage to fill its buffer"),
    ({"D1": 0.5, "BUFFER": 0.5}, {}, "data_mix.BUFFER: a buffer needs the job's data_stage"),
    ({"D0": 0.5, "D1": 0.5}, {"data_stage": "two"}, "data_stage: must be a stage number"),
    ({"D0": 0.5, "BUFFER": 0.5}, {"data_stage": 2, "data_buffer": ["D9"]}, "data_buffer: 'D9' is not in data_sources"),
])
def test_bad_stage_mixes_are_refused(stages: dict[str, str], mix: dict, params: dict, message: str) -> None:
    with pytest.raises(UserError, match=re.escape(f"job j: {message}")):
        _mixture(stages, mix, **params)


def test_mixes_as_named_options_with_expr_weights(stages: dict[str, str], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.sbatch").write_text("#!/bin/bash\n#SBATCH --job-name={name}\nDATA_FILE_LIST={DATA_MIX_FILE} bash train.sh\n")
    (tmp_path / "c.yaml").write_text(textwrap.dedent(f"""\
        name: s{{STAGE}}_{{MIX}}
        template: t.sbatch
        sbatch_script: scripts/{{name}}.sbatch
        output_file: logs/{{name}}.out
        cmd: sbatch {{sbatch_script}}
        REPLAY: 0.05
        STAGE: [1, 2]
        data_stage: "{{STAGE}}"
        data_sources: {{D0: {stages['D0']}, D1: {stages['D1']}, D2: {stages['D2']}}}
        MIX:
          - naive: {{data_mix: {{"D{{STAGE}}": 1.0}}}}
          - replay: {{data_mix: {{D0: "{{REPLAY}}", "D{{STAGE}}": "expr(1 - {{REPLAY}})"}}}}
          - mixA: {{data_mix: {{D0: 0.33, "D{{STAGE}}": 0.33, BUFFER: 0.34}}}}
        """))
    assert orch_main(["build", "c.yaml", "STAGE=2"]) == 0
    lines = {name: (tmp_path / "scripts" / f"s2_{name}.data_mix.txt").read_text().splitlines()
             for name in ("naive", "replay", "mixA")}
    assert lines["naive"] == ["1.000000 /data/d2_text_document d2"]
    assert lines["replay"] == ["0.050000 /data/d0_text_document d0", "0.950000 /data/d2_text_document d2"]
    assert lines["mixA"] == ["0.330000 /data/d0_text_document d0", "0.330000 /data/d2_text_document d2",
                             "0.340000 /data/d1_text_document d1"]
    # Mix A at stage 1 has no buffer to fill: refused in one line, nothing written
    assert orch_main(["build", "c.yaml", "STAGE=1"]) == 2
    assert not list((tmp_path / "scripts").glob("s1_*"))


CONFIG = """\
name: mix_{lr}
template: t.sbatch
sbatch_script: scripts/{name}.sbatch
output_file: logs/{name}.out
cmd: sbatch {sbatch_script}
lr: [1, 2]
data_sources: {web: web.txt, papers: papers.txt}
"""


def test_orch_build_writes_each_jobs_mixture(lists: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.sbatch").write_text("#!/bin/bash\n#SBATCH --job-name={name}\nDATA_FILE_LIST={DATA_MIX_FILE} bash train.sh {lr}\n")
    (tmp_path / "c.yaml").write_text(CONFIG + "data_mix: {web: 0.75, papers: 0.25}\n")
    assert orch_main(["build", "c.yaml"]) == 0
    assert "DATA_FILE_LIST=scripts/mix_2.data_mix.txt bash train.sh 2" in (tmp_path / "scripts" / "mix_2.sbatch").read_text()
    # web 0.75*(0.25, 0.75), papers 0.25.
    for name in ("mix_1", "mix_2"):
        assert (tmp_path / "scripts" / f"{name}.data_mix.txt").read_text() == (
            "0.187500 /data/web/a_text_document web\n0.562500 /data/web/b_text_document web\n"
            "0.250000 /data/papers/arxiv_text_document arxiv\n"
        )


def test_orch_build_with_a_bad_mixture_writes_nothing(
    lists: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.sbatch").write_text("DATA_FILE_LIST={DATA_MIX_FILE}\n")
    (tmp_path / "c.yaml").write_text(CONFIG + "data_mix: {web: 0.75, code: 0.25}\n")
    assert orch_main(["build", "c.yaml"]) == 2
    assert "data_mix.code: no such source in data_sources (known: papers, web)" in capsys.readouterr().err
    assert not (tmp_path / "scripts").exists()


def test_a_mixture_names_an_undefined_variable_in_one_line(stages: dict[str, str], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.sbatch").write_text("#!/bin/bash\n#SBATCH --job-name={name}\n")
    (tmp_path / "c.yaml").write_text(textwrap.dedent(f"""\
        name: j
        template: t.sbatch
        sbatch_script: scripts/{{name}}.sbatch
        output_file: logs/{{name}}.out
        cmd: sbatch {{sbatch_script}}
        data_sources: {{D0: {stages['D0']}}}
        data_mix: {{D0: "{{NOPE}}"}}
        """))
    assert orch_main(["build", "c.yaml"]) == 2
    error = capsys.readouterr().err
    assert "key 'data_mix.D0'" in error and "NOPE" in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "scripts").exists()
