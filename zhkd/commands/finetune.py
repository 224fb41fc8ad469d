"""`zhkd finetune`: train a teacher or a student on gold labels (`zhkd.distill.finetune.finetune`).

`--init M` starts from any checkpoint (a pre-trained MLM or encoder gets a fresh task head); without it,
from zhkd's embedded character encoder (`zhkd.models.EMBEDDED_ENCODER`). `--init scratch --shape NAME`
builds a catalogue shape at random, with a character vocabulary made from the training text, or with
`--tokenizer M`'s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zhkd.commands.training_options import add_training_arguments, stage_line, train_config
from zhkd.tasks import task_names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=task_names())
    parser.add_argument("--train", required=True, type=Path, help="gold training rows (.jsonl or .jsonl.gz)")
    parser.add_argument("--dev", type=Path, help="gold dev rows, scored after every epoch")
    parser.add_argument("--init",
                        help="a checkpoint to start from (MLM, encoder or classifier; directory or hub id), "
                             "or 'scratch' (default: zhkd's embedded character encoder, "
                             "data_cards/zhkd-char-encoder.md)")
    parser.add_argument("--shape", help="with --init scratch: a catalogue shape (see zhkd distill --list-students)")
    parser.add_argument("--tokenizer", help="with --init scratch: use this checkpoint's tokenizer instead of a "
                                            "character vocabulary from the training text")
    parser.add_argument("--vocab-size", type=int, default=8000,
                        help="with --init scratch: at most this many entries in the character vocabulary "
                             "(default 8000)")
    parser.add_argument("--labels",
                        help="label names in id order, comma-separated (default: the training file's, sorted)")
    parser.add_argument("--output", required=True, type=Path, help="directory for the model, log and checkpoints")
    add_training_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from zhkd.distill.finetune import FinetuneConfig, finetune
    from zhkd.models import embedded_encoder

    config = FinetuneConfig(
        task=args.task, train=args.train, init=args.init or str(embedded_encoder()), output=args.output,
        dev=args.dev, shape=args.shape,
        tokenizer=args.tokenizer, vocab_size=args.vocab_size,
        labels=tuple(args.labels.split(",")) if args.labels else None, training=train_config(args),
        resume=args.resume,
    )
    result = finetune(config)
    if not result.ran:
        print(f"{args.output}: already complete", file=sys.stderr)
    elif result.rank == 0:
        print(stage_line("finetune", result.summary["stages"]["finetune"]))
        print(f"model: {args.output}")
    return 0
