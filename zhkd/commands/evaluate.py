"""`zhkd evaluate`: score models by task type, with their size and measured speed, in one table."""

from __future__ import annotations

import argparse
from pathlib import Path

from zhkd.distill.errors import DistillError
from zhkd.tasks import task_names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=task_names())
    parser.add_argument("--model", action="append", default=[], metavar="[NAME=]PATH",
                        help="a checkpoint to evaluate; repeat for several (NAME defaults to the directory name)")
    parser.add_argument("--teacher", metavar="[NAME=]PATH",
                        help="the teacher: %% of its score, speed-up and compression are computed against it")
    parser.add_argument("--test", required=True, type=Path, help="labelled test JSONL (.jsonl or .jsonl.gz)")
    parser.add_argument("--baseline", action="store_true",
                        help="also train the task's classical baseline on --train (TF-IDF + logistic regression, "
                             "or a CRF for tags) and report it as one more row, named 'baseline'")
    parser.add_argument("--train", type=Path, help="with --baseline: the labelled rows it trains on (the teacher's)")
    parser.add_argument("--dev", type=Path, help="with --baseline: labelled rows that choose its regularisation")
    parser.add_argument("--output", required=True, type=Path,
                        help="directory for evaluation.json, evaluation.md and evaluation.png")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier evaluation in --output (once the new one is complete)")
    parser.add_argument("--reference", default="bert-base",
                        help="catalogue shape of the random-weight speed reference, or 'none' (default: %(default)s)")
    parser.add_argument("--seq-len", type=int, help="latency input length (default: median token length of --test)")
    parser.add_argument("--runs", type=int, default=30, help="timed forward passes per measurement (default: 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed passes before them (default: 3)")
    parser.add_argument("--max-seconds", type=float, default=10.0,
                        help="stop a measurement early, after at least 5 runs, once its timed passes took this "
                             "long (default: 10)")
    parser.add_argument("--throughput-batch", type=int, default=32, help="batch of the throughput figure (default: 32)")
    parser.add_argument("--devices", help="comma-separated timing devices (default: cpu, and cuda when present)")
    parser.add_argument("--batch-size", type=int, default=32, help="scoring batch size (default: 32)")
    parser.add_argument("--max-length", type=int, default=512, help="scoring truncation length (default: 512)")


def parse_model_spec(spec: str) -> tuple[str, str]:
    """`NAME=PATH` or `PATH` (named after its last component)."""
    name, sep, path = spec.partition("=")
    if sep and name and path and "/" not in name:
        return name, path
    return Path(spec.rstrip("/")).name or spec, spec


def named_models(specs: list[str], noun: str) -> dict[str, str]:
    """`NAME=PATH` specs as {name: path}, in order; two may not share a name (the report keys on it)."""
    models: dict[str, str] = {}
    for spec in specs:
        name, path = parse_model_spec(spec)
        if name in models:
            raise DistillError(f"two {noun} are named {name!r}; name them with NAME=PATH")
        models[name] = path
    return models


def run(args: argparse.Namespace) -> int:
    from zhkd.distill.evaluate import LatencySettings, label_names_of, render_markdown
    from zhkd.distill.predict import read_task_rows
    from zhkd.outputs import claim, inspect, refuse_inputs

    models = named_models(args.model, "models")
    teacher_name, teacher = parse_model_spec(args.teacher) if args.teacher else ("teacher", None)
    if teacher is not None and args.teacher == teacher:  # a bare path: call it the teacher
        teacher_name = "teacher"
    if args.batch_size < 1:
        raise DistillError("--batch-size must be at least 1")
    devices = tuple(d.strip() for d in args.devices.split(",") if d.strip()) if args.devices else None
    latency = LatencySettings(runs=args.runs, warmup=args.warmup, max_seconds=args.max_seconds,
                              throughput_batch=args.throughput_batch, seq_len=args.seq_len, devices=devices)

    if (args.train or args.dev) and not args.baseline:
        raise DistillError("--train and --dev go with --baseline")
    if args.baseline and not args.train:
        raise DistillError("--baseline needs --train: the labelled rows it trains on")
    if not models and teacher is None and not args.baseline:
        raise DistillError("nothing to evaluate: give --model, --teacher or --baseline")
    first = teacher if teacher is not None else next(iter(models.values()), None)
    labels = label_names_of(first) if first is not None else None
    train_rows = dev_rows = None
    if args.baseline:
        train_rows, labels = read_task_rows(args.train, args.task, label_names=labels)
        dev_rows = read_task_rows(args.dev, args.task, label_names=labels)[0] if args.dev else None
    rows, labels = read_task_rows(args.test, args.task, label_names=labels)
    refuse_inputs(args.output, [args.test, args.train, args.dev, teacher, *models.values()], directory=True)
    found = inspect(args.output, "evaluation")
    if found.complete and not args.overwrite:
        raise DistillError(f"{args.output} holds an evaluation; pass --overwrite to replace it (once the new one "
                           "is complete), or choose another --output")
    with claim(args.output, "evaluation", found=found):
        result = _evaluate(args, models, rows, labels, teacher, teacher_name, latency, train_rows, dev_rows)
    print(render_markdown(result))
    print(f"wrote {args.output / 'evaluation.json'}, evaluation.md and evaluation.png")
    return 0


def _evaluate(args, models, rows, labels, teacher, teacher_name, latency, train_rows, dev_rows) -> dict:
    from zhkd.distill.evaluate import evaluate_models

    return evaluate_models(
        args.task, models, rows, labels, args.output, teacher=teacher, teacher_name=teacher_name,
        reference=None if args.reference.lower() == "none" else args.reference,
        latency=latency, batch_size=args.batch_size, max_length=args.max_length, test_source=str(args.test),
        baseline_train=train_rows, baseline_dev=dev_rows,
    )
