"""GPT-2 (HuggingFace transformers) trained by the DeepSpeed engine on CPU ranks, with Megatron's flags and logs.

    DS_ACCELERATOR=cpu OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 train.py \
        --hidden-size 64 --num-layers 2 --num-attention-heads 2 --seq-length 64 \
        --micro-batch-size 4 --global-batch-size 16 --train-iters 200 --lr 3e-3 --min-lr 0 \
        --lr-warmup-iters 20 --lr-decay-style WSD --lr-wsd-decay-style linear --lr-wsd-decay-iters 0 \
        --zero-stage 1 --save RUN/checkpoints --load RUN/checkpoints --save-interval 50

What is real here: the model (transformers' GPT2LMHeadModel), the engine, its ZeRO optimizer and its checkpoints
(`engine.save_checkpoint(dir, tag="global_step<N>")`: DeepSpeed's own layout, files and `latest`), and the
learning rate, set every iteration by megatron-core's own `OptimizerParamScheduler` built from Megatron's flags
the way Megatron-LM's `get_optimizer_param_scheduler` builds it (lengths in samples: iterations x global batch).
The text is tinylm's seeded grammar (`vocab.py`), so nothing is downloaded and the best loss is known.

What an orchestrator sees is Megatron's: an arguments block, ` iteration N/ M | ... | learning rate: ... |
lm loss: ... |` every --log-interval (the LR after iteration N's scheduler step, as Megatron logs it),
` validation loss at iteration N | lm loss value: ... |` blocks, `[after training is done]` once the final save
has finished on every rank, and with --exit-signal-handler a SIGTERM makes every rank save and exit
(`[exiting program after receiving SIGTERM.]`).

Resuming: --load DIR loads the tag DeepSpeed's `latest` names (DeepSpeed's default: tag=None), or
global_step<--ckpt-step> (Megatron's flag). `latest` is only a hint (rank 0 writes it at ZeRO 0-2 without
waiting for the other ranks), so the example's job templates ask `orch ckpt resume` for the newest whole save
and pass it as --ckpt-step.

--stall-save-at N (a test hook): rank 1 writes the first half of its optimizer shard of save N, then waits to be
killed, once per save folder (a marker `.stalled_global_step<N>` beside the saves): what a job killed by its time
limit in the middle of a save leaves.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from vocab import TRAIN_STREAM, VALID_STREAM, VOCAB_SIZE, GrammarSpec, MarkovGrammar, stream_rng

DECAY_STYLES = ("constant", "linear", "cosine", "inverse-square-root", "WSD")
WSD_DECAY_STYLES = ("exponential", "linear", "cosine", "minus_sqrt")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    model = parser.add_argument_group("model")
    model.add_argument("--num-layers", type=int, default=2)
    model.add_argument("--hidden-size", type=int, required=True)
    model.add_argument("--num-attention-heads", type=int, default=2)
    model.add_argument("--seq-length", type=int, default=64)
    train = parser.add_argument_group("training")
    train.add_argument("--micro-batch-size", type=int, default=4)
    train.add_argument("--global-batch-size", type=int, default=16)
    train.add_argument("--train-iters", type=int, required=True)
    train.add_argument("--weight-decay", type=float, default=0.01)
    train.add_argument("--clip-grad", type=float, default=1.0)
    train.add_argument("--seed", type=int, default=1234)
    train.add_argument("--zero-stage", type=int, default=1, choices=(0, 1, 2, 3))
    train.add_argument("--bf16", action="store_true")
    lr = parser.add_argument_group("learning rate (Megatron's flags)")
    lr.add_argument("--lr", type=float, required=True)
    lr.add_argument("--min-lr", type=float, default=0.0)
    lr.add_argument("--lr-warmup-iters", type=int, default=0)
    lr.add_argument("--lr-warmup-init", type=float, default=0.0)
    lr.add_argument("--lr-decay-style", default="linear", choices=DECAY_STYLES)
    lr.add_argument("--lr-decay-iters", type=int, default=None)
    lr.add_argument("--lr-wsd-decay-style", default="exponential", choices=WSD_DECAY_STYLES)
    lr.add_argument("--lr-wsd-decay-iters", type=int, default=None)
    lr.add_argument("--override-opt_param-scheduler", action="store_true")
    lr.add_argument("--use-checkpoint-opt_param-scheduler", action="store_true")
    ckpt = parser.add_argument_group("checkpoints and logging")
    ckpt.add_argument("--save", default=None)
    ckpt.add_argument("--load", default=None)
    ckpt.add_argument("--save-interval", type=int, default=None)
    ckpt.add_argument("--ckpt-step", type=int, default=None, help="load global_step<N> instead of what `latest` names")
    ckpt.add_argument("--log-interval", type=int, default=10)
    ckpt.add_argument("--eval-interval", type=int, default=None)
    ckpt.add_argument("--eval-iters", type=int, default=4)
    ckpt.add_argument("--exit-signal-handler", action="store_true")
    ckpt.add_argument("--stall-save-at", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def log(message: str) -> None:
    if RANK == 0:
        print(message, flush=True)


def print_datetime(message: str) -> None:
    log(f"[{message}] datetime: {datetime.now():%Y-%m-%d %H:%M:%S} ")


RANK = int(os.environ.get("RANK", "0"))


def scheduler_for(args: argparse.Namespace, optimizer):
    """megatron-core's scheduler with the arguments Megatron-LM's `get_optimizer_param_scheduler` gives it
    for iteration-based training (megatron/training/training.py @d98e8a64): every length x global batch."""
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    batch = args.global_batch_size
    decay_iters = args.lr_decay_iters if args.lr_decay_iters is not None else args.train_iters
    wsd_iters = args.lr_wsd_decay_iters
    return OptimizerParamScheduler(
        optimizer, init_lr=args.lr_warmup_init, max_lr=args.lr, min_lr=args.min_lr,
        lr_warmup_steps=args.lr_warmup_iters * batch, lr_decay_steps=decay_iters * batch,
        lr_decay_style=args.lr_decay_style, start_wd=args.weight_decay, end_wd=args.weight_decay,
        wd_incr_steps=args.train_iters * batch, wd_incr_style="constant",
        use_checkpoint_opt_param_scheduler=args.use_checkpoint_opt_param_scheduler,
        override_opt_param_scheduler=args.override_opt_param_scheduler,
        wsd_decay_steps=wsd_iters * batch if wsd_iters is not None else None,
        lr_wsd_decay_style=args.lr_wsd_decay_style)


def install_stall(save_dir: str, iteration: int) -> None:
    """Rank 1 writes half of its optimizer shard of save `iteration`, then waits to be killed (once per folder)."""
    import torch

    marker = Path(save_dir) / f".stalled_global_step{iteration}"
    real_save = torch.save

    def stalling_save(obj, f, *args, **kwargs):
        path = str(f)
        if (RANK != 1 or f"global_step{iteration}" not in path or "optim_states" not in path
                or marker.exists()):
            return real_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        with open(path, "wb") as handle:
            handle.write(data[: len(data) // 2])
            handle.flush()
            os.fsync(handle.fileno())
        marker.write_text(f"rank 1 stalled writing {path}\n")
        print(f"[stall] rank 1 stopped half-way through {path} ({len(data) // 2} of {len(data)} bytes)", flush=True)
        while True:
            time.sleep(3600)

    torch.save = stalling_save


class Trainer:
    def __init__(self, args: argparse.Namespace) -> None:
        import deepspeed
        import torch
        import torch.distributed as dist
        from transformers import GPT2Config, GPT2LMHeadModel

        self.args, self.torch, self.dist = args, torch, dist
        deepspeed.init_distributed(dist_backend="gloo")
        self.world = dist.get_world_size()
        per_step = args.micro_batch_size * self.world
        if args.global_batch_size % per_step:
            raise SystemExit(f"error: --global-batch-size {args.global_batch_size} is not a multiple of "
                             f"--micro-batch-size x ranks = {per_step}")
        self.accumulation = args.global_batch_size // per_step
        torch.manual_seed(args.seed)
        self.config = GPT2Config(vocab_size=VOCAB_SIZE, n_positions=args.seq_length, n_embd=args.hidden_size,
                                 n_layer=args.num_layers, n_head=args.num_attention_heads, bos_token_id=0,
                                 eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        model = GPT2LMHeadModel(self.config)
        self.parameters = sum(p.numel() for p in model.parameters())
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), eps=1e-8,
                                      weight_decay=args.weight_decay)
        ds_config = {
            "train_batch_size": args.global_batch_size,
            "train_micro_batch_size_per_gpu": args.micro_batch_size,
            "gradient_accumulation_steps": self.accumulation,
            "gradient_clipping": args.clip_grad,
            "zero_optimization": {"stage": args.zero_stage},
            "bf16": {"enabled": args.bf16},
            "steps_per_print": 1 << 30,
        }
        self.engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config)
        self.scheduler = scheduler_for(args, self.engine.optimizer)
        self.grammar = MarkovGrammar(GrammarSpec())
        self.iteration = 0
        self.last_saved: int | None = None
        self.stop_requested = False

    # ---- data ------------------------------------------------------------------------------------------
    def batch(self, stream: int, *index: int):
        """`--micro-batch-size` sequences drawn from their own seeded stream: a resumed run redraws them exactly."""
        tokens = self.grammar.sample(stream_rng(stream, self.args.seed, *index), self.args.micro_batch_size,
                                     self.args.seq_length)
        return self.torch.from_numpy(tokens + 1)  # id 0 is end-of-text

    def mean_over_ranks(self, value: float) -> float:
        tensor = self.torch.tensor([value], dtype=self.torch.float64)
        self.dist.all_reduce(tensor)
        return float(tensor.item()) / self.world

    # ---- checkpoints -----------------------------------------------------------------------------------
    def load(self) -> None:
        args = self.args
        tag = f"global_step{args.ckpt_step}" if args.ckpt_step is not None else None
        if tag is None and not (Path(args.load) / "latest").exists():
            log(f"WARNING: could not find the metadata file {Path(args.load) / 'latest'}")
            log("    will not load any checkpoints and will start from random")
            return
        log(f" loading checkpoint from {args.load} at {tag or 'the tag latest names'}")
        path, client = self.engine.load_checkpoint(args.load, tag=tag, load_lr_scheduler_states=False)
        if path is None:
            raise RuntimeError(f"DeepSpeed found no checkpoint to load in {args.load} (tag {tag})")
        self.iteration = int(client["iteration"])
        self.scheduler.load_state_dict(client["opt_param_scheduler"])
        self.last_saved = self.iteration
        log(f"  successfully loaded checkpoint from {args.load} [ t 0, p 0 ] at iteration {self.iteration}")

    def save(self) -> None:
        if self.last_saved == self.iteration or not self.args.save:
            return
        log(f"saving checkpoint at iteration {self.iteration:7d} to {self.args.save}")
        client = {"iteration": self.iteration, "opt_param_scheduler": self.scheduler.state_dict(),
                  "hf_config": self.config.to_dict(), "args": vars(self.args)}
        # DeepSpeed's own save: every rank writes its files, rank 0 writes `latest`, then a barrier.
        self.engine.save_checkpoint(self.args.save, tag=f"global_step{self.iteration}", client_state=client)
        self.last_saved = self.iteration
        log(f"  successfully saved checkpoint from iteration {self.iteration:7d} to {self.args.save}")

    # ---- training --------------------------------------------------------------------------------------
    def validate(self, label: str) -> None:
        torch = self.torch
        self.engine.eval()
        losses = []
        with torch.no_grad():
            for index in range(RANK, self.args.eval_iters * self.world, self.world):
                ids = self.batch(VALID_STREAM, index)
                losses.append(float(self.engine(input_ids=ids, labels=ids).loss))
        self.engine.train()
        value = self.mean_over_ranks(float(np.mean(losses)))
        line = f" validation loss at {label} | lm loss value: {value:.6E} | lm loss PPL: {np.exp(value):.6E} | "
        log("-" * len(line))
        log(line)
        log("-" * len(line))

    def train_step(self) -> float:
        self.iteration += 1
        losses = []
        for step in range(self.accumulation):
            ids = self.batch(TRAIN_STREAM, self.iteration, step * self.world + RANK)
            loss = self.engine(input_ids=ids, labels=ids).loss
            self.engine.backward(loss)
            self.engine.step()  # the optimizer steps at the accumulation boundary
            losses.append(float(loss.detach()))
        self.scheduler.step(increment=self.args.global_batch_size)  # Megatron: after the optimizer step
        return float(np.mean(losses))

    def should_stop(self) -> bool:
        """Megatron's DistributedSignalHandler: any rank's SIGTERM stops every rank after this iteration."""
        if not self.args.exit_signal_handler:
            return False
        flag = self.torch.tensor([1 if self.stop_requested else 0])
        self.dist.all_reduce(flag, op=self.dist.ReduceOp.MAX)
        return bool(flag.item())

    def train(self) -> int:
        args = self.args
        if args.exit_signal_handler:
            signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stop_requested", True))
        interval_losses: list[float] = []
        interval_start = time.monotonic()
        while self.iteration < args.train_iters:
            interval_losses.append(self.train_step())
            if self.iteration % args.log_interval == 0:
                elapsed_ms = 1000 * (time.monotonic() - interval_start) / len(interval_losses)
                loss = self.mean_over_ranks(float(np.mean(interval_losses)))
                lr = self.engine.optimizer.param_groups[0]["lr"]
                log(f" iteration {self.iteration:8d}/{args.train_iters:8d} |"
                    f" consumed samples: {self.iteration * args.global_batch_size:12d} |"
                    f" elapsed time per iteration (ms): {elapsed_ms:.1f} |"
                    f" learning rate: {lr:.6E} |"
                    f" global batch size: {args.global_batch_size:5d} |"
                    f" lm loss: {loss:.6E} | loss scale: 1.0 |"
                    f" number of skipped iterations:   0 | number of nan iterations:   0 |")
                interval_losses, interval_start = [], time.monotonic()
            if args.eval_interval and self.iteration % args.eval_interval == 0:
                self.validate(f"iteration {self.iteration}")
            if args.save_interval and self.iteration % args.save_interval == 0:
                self.save()
            if self.should_stop():
                self.save()
                print_datetime("exiting program after receiving SIGTERM.")
                return 0
        self.validate(f"iteration {self.iteration} on validation set")
        self.save()  # before the line below: "done" always means the final save is whole on every rank
        print_datetime("after training is done")
        return 0

    def shut_down(self) -> None:
        """Leave the process group together: a rank whose gloo threads are torn down by interpreter exit
        while a peer still talks to it can abort ("terminate called without an active exception")."""
        self.dist.barrier()
        self.dist.destroy_process_group()


def print_arguments(args: argparse.Namespace, trainer: Trainer) -> None:
    log("------------------------ arguments ------------------------")
    for key, value in sorted(vars(args).items()):
        log(f"  {key} {'.' * max(1, 48 - len(key))} {value}")
    log("-------------------- end of arguments ---------------------")
    log(f" > GPT-2: {trainer.parameters} parameters, {trainer.world} ranks x micro batch {args.micro_batch_size}"
        f" x {trainer.accumulation} accumulation steps, DeepSpeed ZeRO-{args.zero_stage}")
    log(f" > data: tinylm grammar, true entropy {trainer.grammar.entropy_rate():.6f} nats/token")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(1)
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)  # keep the log Megatron's
    if args.stall_save_at is not None and args.save:
        install_stall(args.save, args.stall_save_at)
    trainer = Trainer(args)
    print_arguments(args, trainer)
    if args.load:
        trainer.load()
    status = trainer.train()
    trainer.shut_down()
    return status


if __name__ == "__main__":
    sys.exit(main())
