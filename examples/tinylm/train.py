"""Train the tiny LM on the built-in grammar, with Megatron-LM's command line, logs and checkpoint layout.

    python examples/tinylm/train.py --hidden-size 64 --lr 3e-3 --min-lr 0 --train-iters 300 \
        --lr-warmup-iters 20 --lr-decay-style WSD --lr-wsd-decay-style linear --lr-wsd-decay-iters 60 \
        --micro-batch-size 16 --seq-length 64 --save RUN/checkpoints --load RUN/checkpoints \
        --save-interval 100 --log-interval 10 --seed 1

What an orchestrator sees is what Megatron shows: `iteration N/ M | ... | lm loss: ... | learning rate: ...`
lines, `validation loss at iteration N` blocks, `after training is done` at the end, `iter_0000NNN/`
checkpoints plus `latest_checkpointed_iteration.txt`, and SIGTERM (Slurm's time-limit signal) saving a
checkpoint and exiting without `after training is done`, so the resubmitted job resumes from it.
"""

from __future__ import annotations

import os

# One BLAS thread: runs share small machines, and single-threaded sums make resumed runs bit-identical.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import checkpointing  # noqa: E402
from data import DataMixture  # noqa: E402
from grammar import TRAIN_STREAM, VALID_STREAM, GrammarSpec, stream_rng  # noqa: E402
from model import AdamW, ModelConfig, clip_grad_norm, init_params, loss, loss_and_grads  # noqa: E402
from schedule import DECAY_STYLES, WSD_DECAY_STYLES, LRSchedule  # noqa: E402

INIT_STREAM = 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    model = p.add_argument_group("model and data")
    model.add_argument("--hidden-size", type=int, required=True)
    model.add_argument("--num-layers", type=int, default=1, help="hidden tanh layers")
    model.add_argument("--context-size", type=int, default=2, help="previous tokens the model sees")
    model.add_argument("--vocab-size", type=int, default=GrammarSpec.vocab_size)
    model.add_argument("--grammar-seed", type=int, default=GrammarSpec.seed)
    model.add_argument("--data-file-list", type=Path, default=None,
                       help="train on a weighted mixture of datasets (lines 'weight PREFIX corpus', PREFIX.json "
                            "written by grammar.py --write-dataset) instead of the grammar of --grammar-seed")
    model.add_argument("--seq-length", type=int, default=64, help="predicted tokens per sample")
    model.add_argument("--micro-batch-size", type=int, default=16)
    model.add_argument("--global-batch-size", type=int, default=None, help="default: micro batch size")

    opt = p.add_argument_group("optimizer and schedule")
    opt.add_argument("--lr", type=float, required=True)
    opt.add_argument("--min-lr", type=float, default=0.0)
    opt.add_argument("--train-iters", type=int, required=True)
    opt.add_argument("--lr-warmup-iters", type=int, default=0)
    opt.add_argument("--lr-decay-iters", type=int, default=None, help="default: --train-iters")
    opt.add_argument("--lr-decay-style", choices=DECAY_STYLES, default="linear")
    opt.add_argument("--lr-wsd-decay-style", choices=WSD_DECAY_STYLES, default="exponential")
    opt.add_argument("--lr-wsd-decay-iters", type=int, default=0)
    opt.add_argument("--weight-decay", type=float, default=0.0)
    opt.add_argument("--adam-beta1", type=float, default=0.9)
    opt.add_argument("--adam-beta2", type=float, default=0.999)
    opt.add_argument("--adam-eps", type=float, default=1e-8)
    opt.add_argument("--clip-grad", type=float, default=1.0)
    opt.add_argument("--seed", type=int, default=1234)

    ckpt = p.add_argument_group("checkpoints")
    ckpt.add_argument("--save", type=Path, default=None)
    ckpt.add_argument("--load", type=Path, default=None)
    ckpt.add_argument("--save-interval", type=int, default=None)
    ckpt.add_argument("--override-opt_param-scheduler", action="store_true",
                      help="take the LR schedule from the arguments, not from the loaded checkpoint")
    ckpt.add_argument("--use-checkpoint-opt_param-scheduler", action="store_true",
                      help="take the LR schedule from the loaded checkpoint")
    ckpt.add_argument("--finetune", action="store_true",
                      help="load only the weights; restart at iteration 0 with a fresh optimizer")
    ckpt.add_argument("--no-load-optim", action="store_true")
    ckpt.add_argument("--no-load-rng", action="store_true")

    run = p.add_argument_group("logging and exit")
    run.add_argument("--log-interval", type=int, default=100)
    run.add_argument("--eval-interval", type=int, default=1000)
    run.add_argument("--eval-iters", type=int, default=10, help="validation batches")
    run.add_argument("--exit-interval", type=int, default=None, help="save and exit when iteration %% N == 0")
    run.add_argument("--exit-duration-in-mins", type=float, default=None)
    run.add_argument("--exit-signal-handler", action="store_true",
                     help="accepted for Megatron compatibility; SIGTERM is always handled")
    run.add_argument("--sleep-per-iter", type=float, default=0.0,
                     help="extra seconds per iteration, to make demo jobs long enough to watch or interrupt")
    return p


class Stop(Exception):
    """A fatal problem with the run's inputs (checkpoint missing, schedule mismatch...)."""


def log(message: str) -> None:
    print(message, flush=True)


def print_datetime(message: str) -> None:
    log(f"[{message}] datetime: {datetime.now():%Y-%m-%d %H:%M:%S} ")


class TermHandler:
    """Remember a SIGTERM; the training loop checks after each iteration, then saves and exits."""

    def __init__(self) -> None:
        self.received = False
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.received = True


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        if args.data_file_list is not None:
            self.data = DataMixture.from_list(args.data_file_list)
            if self.data.vocab_size != args.vocab_size:
                raise ValueError(f"{args.data_file_list}: datasets of vocabulary {self.data.vocab_size}, "
                                 f"--vocab-size is {args.vocab_size}")
        else:
            self.data = DataMixture.single(GrammarSpec(vocab_size=args.vocab_size, seed=args.grammar_seed))
        self.grammar = self.data.grammars[0]
        self.config = ModelConfig(vocab_size=args.vocab_size, hidden_size=args.hidden_size,
                                  num_layers=args.num_layers, context=args.context_size)
        self.batch = args.global_batch_size or args.micro_batch_size
        self.seed = args.seed
        self.schedule = self._schedule_from_args()
        self.params = init_params(self.config, stream_rng(INIT_STREAM, args.seed))
        self.optimizer = AdamW(self.params, args.adam_beta1, args.adam_beta2, args.adam_eps, args.weight_decay)
        self.iteration = 0
        self.consumed_samples = 0
        self.last_saved: int | None = None
        valid_rng = stream_rng(VALID_STREAM, 0)  # fixed across seeds and runs: losses are comparable
        self.valid_tokens = self.data.sample(valid_rng, args.eval_iters * self.batch,
                                                args.seq_length + args.context_size)

    def _schedule_from_args(self) -> LRSchedule:
        a = self.args
        return LRSchedule(max_lr=a.lr, min_lr=a.min_lr, warmup_iters=a.lr_warmup_iters,
                          decay_iters=a.lr_decay_iters or a.train_iters, decay_style=a.lr_decay_style,
                          wsd_decay_iters=a.lr_wsd_decay_iters, wsd_decay_style=a.lr_wsd_decay_style)

    # ---- checkpoints -------------------------------------------------------------------------------
    def load(self, root: Path) -> None:
        iteration = checkpointing.read_tracker(root)
        if iteration is None:
            log(f"WARNING: could not find the metadata file {root / checkpointing.TRACKER}")
            log("    will not load any checkpoints and will start from random")
            return
        log(f" loading checkpoint from {root} at iteration {iteration}")
        arrays, meta = checkpointing.load(root, iteration)
        if meta["model"] != self.config.as_dict():
            raise Stop(f"checkpoint {root} holds model {meta['model']}, the arguments ask for "
                       f"{self.config.as_dict()}")
        # Continual pre-training changes the data on purpose; a plain run must resume on its own grammar.
        plain = self.args.data_file_list is None and not meta.get("data")
        if plain and meta["grammar"] != self.grammar.spec.__dict__:
            raise Stop(f"checkpoint {root} was trained on grammar {meta['grammar']}, the arguments ask for "
                       f"{self.grammar.spec.__dict__}")
        for name in self.params:
            self.params[name] = np.array(arrays[f"model/{name}"])
        if self.args.finetune:
            log("  finetune: loaded weights only, starting at iteration 0")
        else:
            if not self.args.no_load_optim:
                self.optimizer.load_state(arrays)
            if not self.args.no_load_rng:
                self.seed = int(meta["rng"]["seed"])
            self.iteration = int(meta["iteration"])
            self.consumed_samples = int(meta["consumed_samples"])
            self.last_saved = self.iteration
            self.schedule = self._resolve_schedule(LRSchedule.from_dict(meta["scheduler"]))
        log(f"  successfully loaded checkpoint from {root} [ t 0, p 0 ] at iteration {iteration}")

    def _resolve_schedule(self, saved: LRSchedule) -> LRSchedule:
        """Megatron's rule: arguments win with --override-opt_param-scheduler, the checkpoint wins with
        --use-checkpoint-opt_param-scheduler, and otherwise the two must agree."""
        if self.args.override_opt_param_scheduler:
            log(" > overriding the checkpoint's learning-rate schedule with the arguments")
            return self.schedule
        if self.args.use_checkpoint_opt_param_scheduler:
            log(" > using the checkpoint's learning-rate schedule")
            return saved
        ours, theirs = self.schedule.as_dict(), saved.as_dict()
        for key in ours:
            if ours[key] != theirs[key]:
                raise Stop(f"OptimizerParamScheduler: class input value {ours[key]} and checkpoint value "
                           f"{theirs[key]} for {key} do not match; pass --override-opt_param-scheduler "
                           "to use the arguments (e.g. for a cooldown)")
        return self.schedule

    def save(self, root: Path) -> None:
        if self.last_saved == self.iteration:
            return  # this exact state is already on disk (possibly as a cooldown's symlinked checkpoint)
        log(f"saving checkpoint at iteration {self.iteration:7d} to {root}")
        arrays = {f"model/{name}": value for name, value in self.params.items()}
        arrays.update(self.optimizer.state())
        meta = {
            "iteration": self.iteration,
            "consumed_samples": self.consumed_samples,
            "scheduler": self.schedule.as_dict() | {"num_steps": self.iteration},
            "model": self.config.as_dict(),
            "grammar": self.grammar.spec.__dict__,
            "data": self.data.describe() if self.args.data_file_list is not None else None,
            "rng": {"seed": self.seed, "data": "numpy default_rng([stream, seed, iteration]) per batch"},
            "args": {key: str(value) if isinstance(value, Path) else value
                     for key, value in vars(self.args).items()},
        }
        checkpointing.save(root, self.iteration, arrays, meta)
        self.last_saved = self.iteration
        log(f"  successfully saved checkpoint from iteration {self.iteration:7d} to {root}")

    # ---- training ----------------------------------------------------------------------------------
    def validate(self, label: str) -> float:
        value = loss(self.params, self.config, self.valid_tokens)
        line = f" validation loss at {label} | lm loss value: {value:.6E} | lm loss PPL: {np.exp(value):.6E} | "
        rule = "-" * len(line)
        log(rule)
        log(line)
        log(rule)
        return value

    def train_step(self) -> tuple[float, float, float]:
        self.iteration += 1
        rng = stream_rng(TRAIN_STREAM, self.seed, self.iteration)
        tokens = self.data.sample(rng, self.batch, self.args.seq_length + self.config.context)
        value, grads = loss_and_grads(self.params, self.config, tokens)
        grad_norm = clip_grad_norm(grads, self.args.clip_grad)
        lr = self.schedule.lr_at(self.iteration)
        self.optimizer.step(self.params, grads, lr)
        self.consumed_samples += self.batch
        return value, lr, grad_norm

    def train(self) -> int:
        a = self.args
        terminate = TermHandler()
        started = time.monotonic()
        interval_losses: list[float] = []
        interval_start = time.monotonic()
        while self.iteration < a.train_iters:
            value, lr, grad_norm = self.train_step()
            if a.sleep_per_iter:
                time.sleep(a.sleep_per_iter)
            interval_losses.append(value)
            if self.iteration % a.log_interval == 0:
                elapsed_ms = 1000 * (time.monotonic() - interval_start) / len(interval_losses)
                log(f" iteration {self.iteration:8d}/{a.train_iters:8d} |"
                    f" consumed samples: {self.consumed_samples:12d} |"
                    f" elapsed time per iteration (ms): {elapsed_ms:.1f} |"
                    f" learning rate: {lr:.3E} |"
                    f" global batch size: {self.batch:5d} |"
                    f" lm loss: {np.mean(interval_losses):.6E} |"
                    f" loss scale: 1.0 | grad norm: {grad_norm:.3f} |"
                    f" number of skipped iterations:   0 | number of nan iterations:   0 |")
                interval_losses, interval_start = [], time.monotonic()
            if a.eval_interval and self.iteration % a.eval_interval == 0:
                self.validate(f"iteration {self.iteration}")
            if a.save and a.save_interval and self.iteration % a.save_interval == 0:
                self.save(a.save)
            reason = None
            if terminate.received:
                reason = "exiting program after receiving SIGTERM."
            elif a.exit_interval and self.iteration % a.exit_interval == 0:
                reason = f"exiting program at iteration {self.iteration}"
            elif a.exit_duration_in_mins and time.monotonic() - started > 60 * a.exit_duration_in_mins:
                reason = f"exiting program after {a.exit_duration_in_mins} minutes"
            if reason:
                if a.save:
                    self.save(a.save)
                print_datetime(reason)
                return 0
        self.validate("the end of training for val data")
        if a.save:
            self.save(a.save)  # before the marker below, so "done" always implies the final checkpoint exists
        print_datetime("after training is done")
        return 0


def print_arguments(args: argparse.Namespace, data: DataMixture) -> None:
    log("------------------------ arguments ------------------------")
    for key, value in sorted(vars(args).items()):
        log(f"  {key} {'.' * max(1, 48 - len(key))} {value}")
    log("-------------------- end of arguments ---------------------")
    for weight, name, grammar in zip(data.weights, data.names, data.grammars):
        spec = grammar.spec
        log(f" > tinylm grammar {name} (weight {weight:.6f}): order-{spec.order} Markov chain, vocab {spec.vocab_size},"
            f" seed {spec.seed}, shift {spec.shift:g}, true entropy {grammar.entropy_rate():.6f} nats/token")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.global_batch_size and args.global_batch_size % args.micro_batch_size:
        parser.error("--global-batch-size must be a multiple of --micro-batch-size")
    try:
        run = Run(args)
    except ValueError as exc:  # schedule or grammar arguments that do not fit together
        parser.error(str(exc))
    print_arguments(args, run.data)
    try:
        if args.load:
            run.load(args.load)
        return run.train()
    except (Stop, checkpointing.CheckpointError) as exc:
        log(f"ERROR: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
