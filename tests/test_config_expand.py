"""Grid expansion and interpolation: AutoExperiment's semantics, checked against an independent reference."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from orchestrator.config import expand_config
from orchestrator.config.grid import expand_grid
from orchestrator.config.yaml_loader import parse_yaml_text
from orchestrator.errors import UserError

BASE = """
template: t.sbatch
sbatch_script: "s/{name}.sbatch"
output_file: "logs/{name}.out"
cmd: "sbatch {sbatch_script}"
"""


def load(text: str) -> dict[str, Any]:
    return parse_yaml_text(text, "test.yaml")


def jobs_of(text: str) -> list[Any]:
    return expand_config(load(BASE + text))


def reference_expand(node: Any) -> list[list[tuple[tuple[str, ...], Any]]]:
    """Spec, written independently: each branch is a list of (key path, value) in order."""
    if isinstance(node, dict):
        per_key = [[[((str(k),) + path, v) for path, v in branch] for branch in reference_expand(value)] for k, value in node.items()]
        return [sum(combo, []) for combo in itertools.product(*per_key)]
    if isinstance(node, list) and node and all(isinstance(i, dict) and len(i) == 1 for i in node):
        out = []
        for item in node:
            (option, value), = item.items()
            out.extend([[((str(option),) + path, v) for path, v in branch] for branch in reference_expand(value)])
        return out
    if isinstance(node, list):
        return [[((), item)] for item in node]
    return [[((), node)]]


def reference_params(config: dict[str, Any]) -> list[dict[str, Any]]:
    result = []
    for branch in reference_expand(config):
        params: dict[str, Any] = {}
        for path, value in branch:
            for here, following in zip(path, path[1:]):
                params[here] = following
            params[path[-1]] = value
        result.append(params)
    return result


NESTED = """
dataset:
  - datacomp: {train_data: "/data/dc/{0000000..0139827}.tar", samples: 12_800_000}
  - laion2b: {train_data: "/data/laion/{00000..23295}.tar"}
model_scale:
  - s32: {model: ViT-S-32, batch_size: [256, 1024]}
  - m32:
      model: ViT-M-32
      batch_size: 1024
      precision:
        - bf16: {amp: true}
        - fp32: {amp: false}
epochs: [1, 2]
opt: {name_opt: adamw, betas: [0.9, 0.95]}
"""


def test_order_and_values_match_reference() -> None:
    config = load(NESTED)
    ours = [params for _signature, params in expand_grid(config)]
    assert ours == reference_params(config)
    assert [list(p) for p in ours] == [list(p) for p in reference_params(config)]  # key order too
    # 2 datasets x (2 + 2) model branches x 2 epochs x 2 betas
    assert len(ours) == 2 * 4 * 2 * 2


def test_union_option_name_becomes_value_of_parent_key() -> None:
    jobs = jobs_of('name: "{EXPERIMENTS}_{MODE}"\nEXPERIMENTS:\n  - 10M: {layers: 2}\n  - 25M: {layers: 4, heads: 8}\nMODE: [train, eval]\n')
    assert [j.name for j in jobs] == ["10M_train", "10M_eval", "25M_train", "25M_eval"]
    assert jobs[2].params["layers"] == 4 and jobs[2].params["heads"] == 8
    assert "heads" not in jobs[0].params


def test_mapping_crosses_its_keys_in_key_order() -> None:
    jobs = jobs_of('name: "{a}_{b}"\nsweep: {a: [1, 2], b: [x, y, z]}\n')
    assert [j.name for j in jobs] == ["1_x", "1_y", "1_z", "2_x", "2_y", "2_z"]
    # AutoExperiment: the parent key points at the last child key of the path.
    assert jobs[0].params["sweep"] == "b"


def test_yaml_numbers_read_like_omegaconf() -> None:
    data = load("a: 5e-4\nb: 1e-2\nc: 1.e-2\nd: 2_000_000_000\ne: true\nf: 1.5\ng: '5e-4'\nh: 2024-01-01\n")
    assert data == {"a": 5e-4, "b": 1e-2, "c": 1e-2, "d": 2_000_000_000, "e": True, "f": 1.5, "g": "5e-4", "h": "2024-01-01"}
    assert type(data["d"]) is int and type(data["a"]) is float


def test_references_resolve_in_any_order_and_depth() -> None:
    jobs = jobs_of('name: "{run}"\nrun: "{exp}_{mode}"\nexp: "{size}_lr{lr}"\nmode: train\nsize: 10M\nlr: 0.001\n')
    assert jobs[0].name == "10M_lr0.001_train"
    assert jobs[0].params["sbatch_script"] == "s/10M_lr0.001_train.sbatch"
    assert jobs[0].params["cmd"] == "sbatch s/10M_lr0.001_train.sbatch"


def test_format_specs() -> None:
    jobs = jobs_of('name: "lr{lr:.0e}_seed{seed:03d}_{frac:.1%}"\nlr: [5e-4]\nseed: [7]\nfrac: 0.25\n')
    assert jobs[0].name == "lr5e-04_seed007_25.0%"


def test_expressions_match_python_float_text() -> None:
    jobs = jobs_of(
        'name: "lr{LR}"\nLR: [0.005, 3e-4]\nWD: "expr(1e-4/{LR})"\nWARM: "expr(int(2000 * 256 / {GBS}))"\nGBS: 512\n'
        'BIG: "expr({GBS} > 256)"\nROOT: "expr(sqrt({GBS}) + ceil(2.1))"\n'
    )
    assert jobs[0].params["WD"] == 1e-4 / 0.005 and str(jobs[0].params["WD"]) == str(1e-4 / 0.005)
    assert str(jobs[1].params["WD"]) == str(1e-4 / 3e-4)  # 0.33333333333333337, as Python's eval prints it
    assert jobs[0].params["WARM"] == 1000 and type(jobs[0].params["WARM"]) is int
    assert jobs[0].params["BIG"] is True
    assert jobs[0].params["ROOT"] == math.sqrt(512) + 3


def test_expression_over_interpolated_expression() -> None:
    jobs = jobs_of('name: "n{ITERS}"\nTOKENS: 2_000_000\nGBS: "expr(8 * 4)"\nITERS: "expr({TOKENS} // ({GBS} * 1000))"\n')
    assert jobs[0].name == "n62"


def test_brace_text_that_is_not_a_reference_is_kept_like_autoexperiment() -> None:
    jobs = jobs_of(
        'name: "x"\ndata: "/p/{0000..0139}.tar"\nshell: \'\\${HOME}/runs\'\nregex: "step \\\\d{3}"\nuse: "--data {data}"\n'
    )
    params = jobs[0].params
    assert params["data"] == "/p/{0000..0139}.tar"
    assert params["shell"] == "${HOME}/runs"
    assert params["regex"] == "step \\d{3}"
    assert params["use"] == "--data /p/{0000..0139}.tar"


def test_dollar_brace_of_a_defined_key_is_an_omegaconf_interpolation_like_autoexperiment() -> None:
    jobs = jobs_of('name: "x"\nHOME: /home/me\npath: "${HOME}/runs"\n')
    assert jobs[0].params["path"] == "/home/me/runs"


def test_dollar_brace_of_an_unknown_key_is_an_error_with_the_escape_to_use() -> None:
    with pytest.raises(UserError, match=r"key 'path': \$\{HOME\}: no key 'HOME' in the config \(write \\\$\{HOME\}"):
        jobs_of('name: "x"\npath: "${HOME}/runs"\n')


def test_escaped_braces_are_formatted_again_like_autoexperiment() -> None:
    # AutoExperiment formats until nothing changes: `{{y}}` -> `{y}` -> value of y.
    jobs = jobs_of('name: "x"\ny: 5\nz: "{{y}}"\n')
    assert jobs[0].params["z"] == "5"


def test_dotted_keys_are_whole_variable_names() -> None:
    jobs = jobs_of('name: "lr{args.lr}"\nargs.lr: [0.01, 0.003]\nargs.wd: "expr(1e-4 / {args.lr})"\n')
    assert [j.name for j in jobs] == ["lr0.01", "lr0.003"]
    assert jobs[0].params["args.wd"] == 1e-4 / 0.01


def test_atomic_keys_are_not_expanded() -> None:
    jobs = jobs_of('name: "m{mix}"\nmix: [a, b]\ndata_mix: {web: 0.7, code: 0.3}\n')
    assert len(jobs) == 2 and jobs[0].params["data_mix"] == {"web": 0.7, "code": 0.3}


def test_special_keys_become_job_fields() -> None:
    jobs = jobs_of(
        'name: "j"\ncheck_interval_secs: "expr(60 * 2)"\ntermination_str: "done {name}"\n'
        'start_condition_cmd: "test -e x && echo 1"\nfreeze_secs: 30\nmax_failures: 5\n'
    )
    job = jobs[0]
    assert (job.check_interval_secs, job.termination_str, job.freeze_secs, job.max_failures) == (120, "done j", 30, 5)
    assert job.start_condition_cmd == "test -e x && echo 1" and job.effective_freeze_secs == 30


def test_planned_resolution_equals_general_resolution_across_branches() -> None:
    text = BASE + (
        'name: "{size}_{mode}_{lr}"\nlr: [0.1, 0.01]\nsize:\n  - s: {w: 1, tag: "{w}x"}\n  - m: {w: 2, tag: "w{w}"}\n'
        'mode:\n  - train: {cmd2: "run {tag}", iters: "expr({w} * 10)"}\n  - eval: {cmd2: "eval {name}"}\n'
    )
    from orchestrator.config.resolve import Resolver

    config = load(text)
    planned = [j.params for j in expand_config(config)]
    general = []
    for _signature, params in expand_grid(config):
        general.append(Resolver().resolve(params))
    assert planned == general
    assert planned[0]["cmd2"] == "run 1x" and planned[0]["iters"] == 10
    assert planned[-1]["cmd2"] == "eval m_eval_0.01"
