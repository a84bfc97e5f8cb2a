"""The tiny numpy LM example: grammar entropy, backprop, LR schedule, checkpoints, resume, SIGTERM, cooldown."""

from __future__ import annotations

import hashlib
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tinylm"
sys.path.insert(0, str(EXAMPLE))

import checkpointing  # noqa: E402
from grammar import TEST_STREAM, GrammarSpec, MarkovGrammar, stream_rng  # noqa: E402
from model import ModelConfig, init_params, loss, loss_and_grads  # noqa: E402
from schedule import LRSchedule  # noqa: E402

# Small but real: a width-64 model learns visibly in 200 iterations of 16 x 64 tokens (about a second).
BASE = ["--hidden-size", "64", "--lr", "1e-2", "--min-lr", "0", "--micro-batch-size", "16", "--seq-length", "64",
        "--lr-warmup-iters", "20", "--lr-decay-style", "WSD", "--lr-wsd-decay-style", "linear",
        "--log-interval", "10", "--eval-interval", "0"]


def run_script(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(EXAMPLE / script), *map(str, args)],
                          capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def train(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_script("train.py", *BASE, *args, check=check)


def logged_iterations(stdout: str) -> list[int]:
    return [int(line.split()[1].split("/")[0]) for line in stdout.splitlines()
            if line.startswith(" iteration ")]


def logged_lrs(stdout: str) -> dict[int, float]:
    lrs = {}
    for line in stdout.splitlines():
        if line.startswith(" iteration "):
            fields = dict(part.strip().rsplit(":", 1) for part in line.split("|")[1:] if ":" in part)
            lrs[int(line.split()[1].split("/")[0])] = float(fields["learning rate"])
    return lrs


def checkpoint_arrays(root: Path, iteration: int) -> dict[str, np.ndarray]:
    arrays, _ = checkpointing.load(root, iteration)
    return arrays


def evaluate_checkpoint(root: Path, iteration: int, work: Path) -> dict:
    converted = work / f"converted_{iteration}"
    run_script("convert.py", "--load", root, "--iteration", iteration, "--out", converted)
    results = work / f"results_{iteration}.json"
    run_script("evaluate.py", "--model", converted, "--out", results)
    return json.loads(results.read_text())


def tree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.read_bytes())
    return digest.hexdigest()


# ---- grammar -----------------------------------------------------------------------------------------

def test_true_entropy_matches_sampled_text():
    grammar = MarkovGrammar(GrammarSpec())
    flat = grammar.probs.reshape(-1, grammar.spec.vocab_size)
    np.testing.assert_allclose(flat.sum(axis=1), 1.0)
    # stationarity: one step of the chain maps pi to itself
    pi = grammar.stationary.reshape(32, 32)
    stepped = np.einsum("ab,abc->bc", pi, grammar.probs)
    np.testing.assert_allclose(stepped, pi, atol=1e-12)
    # the exact entropy rate equals the average surprisal of text sampled from the chain
    tokens = grammar.sample(stream_rng(TEST_STREAM, 7), 400, 200)
    sampled = -grammar.log_prob(tokens).mean()
    assert abs(sampled - grammar.entropy_rate()) < 0.02
    assert 0.5 < grammar.entropy_rate() < math.log(32) - 1.0  # learnable structure, far from uniform


def test_grammar_is_a_pure_function_of_its_seed():
    a, b = MarkovGrammar(GrammarSpec(seed=5)), MarkovGrammar(GrammarSpec(seed=5))
    assert np.array_equal(a.probs, b.probs)
    assert not np.array_equal(a.probs, MarkovGrammar(GrammarSpec(seed=6)).probs)


# ---- model and schedule ----------------------------------------------------------------------------

def test_backprop_matches_finite_differences():
    config = ModelConfig(vocab_size=7, hidden_size=5, num_layers=2, context=2)
    rng = np.random.default_rng(0)
    trained = init_params(config, rng)
    assert {value.dtype for value in trained.values()} == {np.dtype(np.float32)}  # what training uses
    # Finite differences of 1e-6 need float64; the backprop is the same code in either precision.
    params = {name: value.astype(np.float64) for name, value in trained.items()}
    tokens = rng.integers(0, 7, size=(3, 9))
    _, grads = loss_and_grads(params, config, tokens)
    assert {grad.dtype for grad in grads.values()} == {np.dtype(np.float64)}
    for name, value in params.items():
        for index in [tuple(rng.integers(0, n) for n in value.shape) for _ in range(3)]:
            saved = value[index]
            value[index] = saved + 1e-6
            up = loss(params, config, tokens)
            value[index] = saved - 1e-6
            down = loss(params, config, tokens)
            value[index] = saved
            assert grads[name][index] == pytest.approx((up - down) / 2e-6, rel=1e-4, abs=1e-8), name


@pytest.mark.parametrize("style, mid_coeff", [
    ("linear", 0.5), ("cosine", 0.5), ("exponential", 2 * 0.5 ** 0.5 - 1), ("minus_sqrt", 1 - 0.5 ** 0.5)])
def test_wsd_schedule_follows_megatron(style, mid_coeff):
    sched = LRSchedule(max_lr=1e-2, min_lr=1e-3, warmup_iters=10, decay_iters=100, decay_style="WSD",
                       wsd_decay_iters=20, wsd_decay_style=style)
    assert sched.lr_at(5) == pytest.approx(5e-3)  # linear warmup
    assert [sched.lr_at(step) for step in (10, 50, 80)] == pytest.approx([1e-2] * 3)  # stable
    assert sched.lr_at(90) == pytest.approx(1e-3 + mid_coeff * 9e-3)
    assert sched.lr_at(100) == pytest.approx(1e-3)
    decay = [sched.lr_at(step) for step in range(80, 101)]
    assert all(a > b for a, b in zip(decay, decay[1:]))


@pytest.mark.parametrize("style, quarter_coeff", [("linear", 0.75), ("cosine", 0.5 * (math.cos(math.pi / 4) + 1))])
def test_classic_decay_runs_from_end_of_warmup_to_decay_iters(style, quarter_coeff):
    sched = LRSchedule(max_lr=1.0, min_lr=0.1, warmup_iters=20, decay_iters=100, decay_style=style,
                       wsd_decay_iters=0, wsd_decay_style="linear")
    assert sched.lr_at(20) == pytest.approx(1.0)
    assert sched.lr_at(40) == pytest.approx(0.1 + quarter_coeff * 0.9)
    assert sched.lr_at(100) == pytest.approx(0.1) and sched.lr_at(150) == pytest.approx(0.1)


# ---- checkpoints, resume, SIGTERM ------------------------------------------------------------------

def test_save_replaces_a_symlinked_checkpoint_without_touching_its_target(tmp_path):
    pretrain, cooldown = tmp_path / "pre", tmp_path / "cool"
    checkpointing.save(pretrain, 5, {"w": np.ones(3)}, {"iteration": 5})
    before = tree_digest(pretrain)
    cooldown.mkdir()
    (cooldown / "iter_0000005").symlink_to(checkpointing.iteration_dir(pretrain, 5))
    checkpointing.save(cooldown, 5, {"w": np.zeros(3)}, {"iteration": 5})
    assert not (cooldown / "iter_0000005").is_symlink()
    assert tree_digest(pretrain) == before
    assert checkpoint_arrays(cooldown, 5)["w"].tolist() == [0, 0, 0]
    assert sorted(p.name for p in cooldown.iterdir()) == ["iter_0000005", checkpointing.TRACKER]


def test_resumed_run_is_identical_to_an_uninterrupted_one(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train("--train-iters", "40", "--lr-wsd-decay-iters", "10", "--save", straight, "--save-interval", "20")
    first = train("--train-iters", "40", "--lr-wsd-decay-iters", "10", "--save", split, "--load", split,
                  "--save-interval", "20", "--exit-interval", "20")
    assert "will not load any checkpoints and will start from random" in first.stdout
    assert "after training is done" not in first.stdout
    assert checkpointing.read_tracker(split) == 20
    second = train("--train-iters", "40", "--lr-wsd-decay-iters", "10", "--save", split, "--load", split,
                   "--save-interval", "20")
    assert f"loading checkpoint from {split} at iteration 20" in second.stdout
    assert logged_iterations(second.stdout) == [30, 40]
    assert second.stdout.rstrip().splitlines()[-1].startswith("[after training is done]")
    assert (split / checkpointing.TRACKER).read_text().strip() == "40"
    a, b = checkpoint_arrays(straight, 40), checkpoint_arrays(split, 40)
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        assert np.array_equal(a[name], b[name]), name


def test_sigterm_saves_a_checkpoint_and_the_resubmitted_job_continues(tmp_path):
    ckpt = tmp_path / "ckpt"
    # constant LR with a fixed decay horizon: the schedule does not depend on --train-iters
    args = [*BASE, "--lr-decay-style", "constant", "--lr-decay-iters", "1000", "--log-interval", "1",
            "--save", ckpt, "--load", ckpt, "--save-interval", "1000"]
    proc = subprocess.Popen([sys.executable, str(EXAMPLE / "train.py"), *map(str, args),
                             "--train-iters", "1000", "--sleep-per-iter", "0.05"],
                            stdout=subprocess.PIPE, text=True)
    seen = []
    deadline = time.monotonic() + 60
    for line in proc.stdout:  # wait until training is under way, like a Slurm time limit would
        seen.append(line)
        if line.startswith(" iteration ") and logged_iterations(line)[0] >= 5:
            break
        assert time.monotonic() < deadline, "training did not start"
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    assert proc.wait(timeout=60) == 0
    output = "".join(seen) + rest
    assert "exiting program after receiving SIGTERM." in output
    assert "after training is done" not in output
    stopped = checkpointing.read_tracker(ckpt)
    assert stopped == max(logged_iterations(output)) and 5 <= stopped < 1000
    assert f"successfully saved checkpoint from iteration {stopped:7d}" in output

    resumed = run_script("train.py", *args, "--train-iters", stopped + 3)
    assert logged_iterations(resumed.stdout) == [stopped + 1, stopped + 2, stopped + 3]
    assert "after training is done" in resumed.stdout
    reference = tmp_path / "reference"
    run_script("train.py", *[reference if a == ckpt else a for a in args], "--train-iters", stopped + 3)
    for name, value in checkpoint_arrays(reference, stopped + 3).items():
        assert np.array_equal(value, checkpoint_arrays(ckpt, stopped + 3)[name]), name


def test_changed_schedule_needs_override(tmp_path):
    ckpt = tmp_path / "ckpt"
    train("--train-iters", "10", "--lr-wsd-decay-iters", "0", "--save", ckpt)
    proc = train("--train-iters", "20", "--lr-wsd-decay-iters", "5", "--load", ckpt, check=False)
    assert proc.returncode == 1
    assert "--override-opt_param-scheduler" in proc.stdout and "Traceback" not in proc.stderr
    wrong_width = run_script("train.py", *BASE, "--hidden-size", "32", "--train-iters", "20", "--load", ckpt,
                             "--override-opt_param-scheduler", check=False)
    assert wrong_width.returncode == 1 and "hidden_size" in wrong_width.stdout


def test_convert_and_evaluate_write_complete_outputs(tmp_path):
    ckpt = tmp_path / "ckpt"
    train("--train-iters", "20", "--lr-wsd-decay-iters", "5", "--save", ckpt, "--save-interval", "10")
    results = evaluate_checkpoint(ckpt, 10, tmp_path)
    config = json.loads((tmp_path / "converted_10" / "config.json").read_text())
    assert config["model_type"] == "tinylm" and config["hidden_size"] == 64 and config["iteration"] == 10
    assert config["vocab_size"] == 32
    assert results["iteration"] == 10 and results["run"]["tokens"] == 256 * 128
    assert results["perplexity"] == pytest.approx(math.exp(results["val_loss"]))
    assert results["true_entropy"] == pytest.approx(MarkovGrammar(GrammarSpec()).entropy_rate())
    assert results["true_entropy"] < results["val_loss"] < math.log(32) + 0.5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left behind
    missing = run_script("evaluate.py", "--model", tmp_path / "nope", "--out", tmp_path / "x.json", check=False)
    assert missing.returncode == 2 and "config.json" in missing.stderr and not (tmp_path / "x.json").exists()


# ---- the point of the example: a WSD cooldown helps ------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_wsd_cooldown_beats_the_checkpoint_it_branched_from_and_constant_lr(tmp_path, seed):
    """Pretrain at constant LR to S=200; branch a 50-step linear cooldown the way AutoExperiment does
    (symlink the pretrain checkpoint into the cooldown's folder, write its tracker), and compare held-out
    loss with the step-S checkpoint and with 50 more steps at constant LR."""
    pretrain, cooldown, constant = tmp_path / "pretrain", tmp_path / "cooldown", tmp_path / "constant"
    common = ["--seed", str(seed), "--override-opt_param-scheduler"]
    train(*common, "--train-iters", "200", "--lr-wsd-decay-iters", "0", "--save", pretrain,
          "--save-interval", "100")
    before = tree_digest(pretrain)
    for branch in (cooldown, constant):
        branch.mkdir()
        (branch / "iter_0000200").symlink_to(checkpointing.iteration_dir(pretrain, 200))
        (branch / checkpointing.TRACKER).write_text("200\n")
    cool = train(*common, "--train-iters", "250", "--lr-wsd-decay-iters", "50", "--load", cooldown,
                 "--save", cooldown)
    train(*common, "--train-iters", "250", "--lr-wsd-decay-iters", "0", "--load", constant, "--save", constant)
    assert tree_digest(pretrain) == before  # branches never write through the symlink

    lrs = logged_lrs(cool.stdout)
    assert lrs[210] == pytest.approx(1e-2 * 0.8, rel=1e-3) and lrs[250] == 0.0

    at_s = evaluate_checkpoint(pretrain, 200, tmp_path)["val_loss"]
    cooled = evaluate_checkpoint(cooldown, 250, tmp_path)["val_loss"]
    kept_constant = evaluate_checkpoint(constant, 250, tmp_path)["val_loss"]
    assert cooled < at_s - 0.03, (at_s, cooled)
    assert cooled < kept_constant - 0.005, (kept_constant, cooled)


@pytest.mark.parametrize("decay_style, wsd_style", [("constant", "linear"), ("linear", "linear"), ("cosine", "linear"),
                                                    *(("WSD", style) for style in ("linear", "cosine", "exponential",
                                                                                   "minus_sqrt"))])
def test_schedule_is_the_curve_orch_lr_schedule_draws_for_megatron_lm(decay_style: str, wsd_style: str) -> None:
    # tinylm stands in for Megatron-LM in the demo: its LRs must be what `orch lr check` assumes
    from orchestrator.planning.lr_schedules import megatron_lm

    tiny = LRSchedule(max_lr=3e-3, min_lr=1e-4, warmup_iters=20, decay_iters=250, decay_style=decay_style,
                      wsd_decay_iters=60, wsd_decay_style=wsd_style)
    flags = dict(lr=3e-3, min_lr=1e-4, train_iters=250, lr_warmup_iters=20, lr_decay_style=decay_style,
                 lr_wsd_decay_iters=60, lr_wsd_decay_style=wsd_style)
    for step in range(0, 260):
        assert tiny.lr_at(step) == pytest.approx(megatron_lm.lr_at(step, **flags), rel=1e-12, abs=1e-15), step
