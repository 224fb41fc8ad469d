"""`zhkd finetune`: train a teacher or a student on gold labels.

`--init M` starts from any checkpoint (a pre-trained MLM or encoder gets a fresh task head; this is how
the demo's teacher is made from its MLM). `--init scratch --shape NAME` builds a catalogue shape at
random, with a character vocabulary made from the training text, or with `--tokenizer M`'s.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zhkd.commands.training_options import (
    add_training_arguments,
    make_run,
    prepare_output,
    stage_line,
    train_config,
)
from zhkd.distill.errors import DistillError
from zhkd.tasks import get_task, task_names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=task_names())
    parser.add_argument("--train", required=True, type=Path, help="gold training rows (.jsonl or .jsonl.gz)")
    parser.add_argument("--dev", type=Path, help="gold dev rows, scored after every epoch")
    parser.add_argument("--init", required=True,
                        help="a checkpoint to start from (MLM, encoder or classifier; directory or hub id), "
                             "or 'scratch'")
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


def scratch_model(args, train_rows: list[dict], label_names: list[str], rank: int, world: int):
    """A catalogue shape at random, and its tokenizer (built from the training text, or given)."""
    from zhkd.distill.students import build_model, get_shape
    from zhkd.distill.train import barrier
    from zhkd.models import char_vocab, load_tokenizer, save_char_tokenizer

    shape = get_shape(args.shape)
    if args.tokenizer:
        tokenizer = load_tokenizer(args.tokenizer)
    else:
        if rank == 0:
            texts = (" ".join(r["tokens"]) if get_task(args.task).per_token else r["text"] + r.get("text_pair", "")
                     for r in train_rows)
            save_char_tokenizer(char_vocab(texts, max_size=args.vocab_size), args.output)
        barrier(world)  # the other ranks read the tokenizer rank 0 wrote
        tokenizer = load_tokenizer(args.output)
    model = build_model(shape, kind=get_task(args.task).model_kind, vocab_size=len(tokenizer), labels=label_names,
                        pad_token_id=tokenizer.pad_token_id or 0, seed=args.seed)
    return model, tokenizer


def pretrained_model(args, label_names: list[str]):
    """A checkpoint with a task head for these labels; a head that does not fit is initialised afresh."""
    import torch

    from zhkd.models import load_model, load_tokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        model = load_model(get_task(args.task).model_kind, args.init, announce=True, num_labels=len(label_names),
                           id2label=dict(enumerate(label_names)),
                           label2id={name: i for i, name in enumerate(label_names)}, ignore_mismatched_sizes=True)
    return model, load_tokenizer(args.init)


def run(args: argparse.Namespace) -> int:
    import sys

    from zhkd.distill.predict import read_task_rows
    from zhkd.distill.train import distributed

    config = train_config(args)
    if args.init != "scratch" and (args.shape or args.tokenizer):
        raise DistillError("--shape and --tokenizer go with --init scratch")
    if args.init == "scratch" and not args.shape:
        raise DistillError("--init scratch needs --shape (see zhkd distill --list-students)")
    if args.init == "scratch":
        from zhkd.distill.students import get_shape

        get_shape(args.shape)  # an unknown shape is refused before anything is written
    if not prepare_output(args.output, resume=args.resume):
        print(f"{args.output}: already complete", file=sys.stderr)
        return 0
    labels = args.labels.split(",") if args.labels else None
    train_rows, label_names = read_task_rows(args.train, args.task, labels)
    dev_rows = read_task_rows(args.dev, args.task, label_names)[0] if args.dev else None
    with distributed() as (rank, world, device):
        return _finetune(args, config, train_rows, dev_rows, label_names, rank, world, device)


def _finetune(args, config, train_rows, dev_rows, label_names, rank: int, world: int, device: str) -> int:
    from zhkd.distill.collate import Collator
    from zhkd.distill.loader import RowSource
    from zhkd.distill.train import Stage, run_stages

    if args.init == "scratch":
        model, tokenizer = scratch_model(args, train_rows, label_names, rank, world)
    else:
        model, tokenizer = pretrained_model(args, label_names)
    run_context = make_run(args.output, args.task, label_names, tokenizer, dev_rows, rank, world, device)
    run_context.log({"event": "finetune", "task": args.task, "init": args.init, "shape": args.shape,
                     "labels": label_names, "train_rows": len(train_rows),
                     "dev_rows": len(dev_rows) if dev_rows else 0})
    collate = Collator(args.task, tokenizer, max_length=config.max_length,
                       token_types=getattr(model.config, "type_vocab_size", 1) > 1)
    source = RowSource(train_rows, seed=config.seed, rank=rank, world_size=world, group_rows=config.group_rows(world))
    summary = run_stages(model, [Stage("finetune", source, collate, config)], run_context, resume=args.resume)
    if rank == 0:
        print(stage_line("finetune", summary["stages"]["finetune"]))
        print(f"model: {args.output}")
    return 0

