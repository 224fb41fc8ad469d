"""What `zhkd finetune` and `zhkd distill` share: the training options and the line that reports a stage.

Light at import (no torch): the CLI imports it to build `--help`.
"""

from __future__ import annotations

import argparse

from zhkd.distill.config import PRECISIONS, TrainConfig


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs per stage (default {d.epochs})")
    group.add_argument("--max-steps", type=int, help="steps per stage, overriding --epochs")
    group.add_argument("--batch-size", type=int, default=d.batch_size,
                       help=f"rows per process per step (default {d.batch_size})")
    group.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr})")
    group.add_argument("--seed", type=int, default=d.seed, help=f"data order and initialisation (default {d.seed})")
    group.add_argument("--max-length", type=int, default=d.max_length,
                       help=f"pieces per row (default {d.max_length})")
    group.add_argument("--warmup", type=float, default=d.warmup,
                       help=f"fraction of steps warming up the learning rate (default {d.warmup})")
    group.add_argument("--group-by-length", action=argparse.BooleanOptionalAction, default=d.group_by_length,
                       help="batch rows of similar length together, shuffled in windows of 50 steps: less "
                            "padding, same rows per epoch (default off: see docs/distill.md)")
    group.add_argument("--num-workers", type=int, default=d.num_workers,
                       help="DataLoader worker processes collating batches (default 0: in the main process)")
    group.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                       help="the forward's precision: bf16 autocast or float32; auto (default) is bf16 on CUDA, "
                            "float32 on a CPU. Losses, weights and optimiser stay float32")
    group.add_argument("--save-every", type=int, default=d.save_every,
                       help=f"steps between resumable checkpoints (default {d.save_every})")
    group.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The options as a TrainConfig, which checks them."""
    return TrainConfig(epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                       seed=args.seed, max_length=args.max_length, warmup=args.warmup, num_workers=args.num_workers,
                       save_every=args.save_every, group_by_length=args.group_by_length, precision=args.precision)


def stage_line(name: str, result: dict) -> str:
    dev = result.get("dev")
    score = f"dev {dev['metric']} {dev['score']:.4f}" if dev else "no dev split"
    return f"{name}: {result['steps']} steps, {score}"
