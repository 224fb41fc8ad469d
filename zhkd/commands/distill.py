"""`zhkd distill`: a student from a soft-label dataset, in the paper's stages.

pre (fine-tune the student on gold labels), kd (distil on the shards), post (fine-tune again at a low
learning rate): any subset, in that order. The student is a catalogue shape (started from the teacher
where the widths allow), `auto` (the most capable shape within `--speedup` / `--max-params`, measured
here), or a checkpoint. Several comma-separated teachers are compared on the dev split first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zhkd.commands.training_options import (
    add_training_arguments,
    make_run,
    prepare_output,
    stage_line,
    train_config,
)
from zhkd.distill.config import SOFT_LOSSES, LossConfig
from zhkd.distill.errors import DistillError
from zhkd.tasks import get_task, task_names

STAGES = ("pre", "kd", "post")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = LossConfig()
    parser.add_argument("--list-students", action="store_true", help="print the catalogue's student shapes and exit")
    parser.add_argument("--data", type=Path, help="a soft-label dataset directory (zhkd build)")
    parser.add_argument("--teacher", help="the teacher checkpoint; several, comma-separated, are compared on --dev")
    parser.add_argument("--student", help="a catalogue shape, 'auto' (choose by --speedup/--max-params), "
                                          "or a checkpoint")
    parser.add_argument("--output", type=Path, help="directory for the student, log and checkpoints")
    parser.add_argument("--stages", help="comma-separated subset of pre,kd,post (default: all three with --train, "
                                         "else kd)")
    parser.add_argument("--task", choices=task_names(), help="the task, when no --data gives it")
    parser.add_argument("--train", type=Path, help="gold training rows for the pre and post stages")
    parser.add_argument("--dev", type=Path, help="gold dev rows: the score after every stage")
    parser.add_argument("--temperature", type=float, default=d.temperature,
                        help=f"softmax temperature of the KD loss (default {d.temperature})")
    parser.add_argument("--alpha", type=float, default=d.alpha,
                        help=f"weight of the gold-label loss in kd; 1-alpha goes to the soft loss (default {d.alpha})")
    parser.add_argument("--soft-loss", choices=SOFT_LOSSES, default=d.soft,
                        help="kl (default), ce (soft cross-entropy) or mse (logit MSE)")
    parser.add_argument("--stage-steps", metavar="STAGE=N,...",
                        help="steps of each named stage, e.g. pre=60,kd=180,post=60: a total split across the "
                             "stages (a stage not named runs --max-steps or --epochs)")
    parser.add_argument("--post-lr", type=float, help="learning rate of the post stage (default --lr / 10)")
    parser.add_argument("--layer-map", choices=("uniform", "bottom", "top", "none"), default="uniform",
                        help="which teacher layers start a catalogue student (default uniform; none: random)")
    parser.add_argument("--speedup", type=float, help="with --student auto: the least speed-up over the teacher")
    parser.add_argument("--max-params", type=float, help="with --student auto: the most parameters (e.g. 12e6)")
    add_training_arguments(parser)


def _stages(args) -> list[str]:
    if args.stages is None:
        return list(STAGES) if args.train else ["kd"]
    chosen = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in STAGES]
    if unknown or not chosen:
        raise DistillError(f"--stages: {', '.join(unknown) or 'empty'}; choose from {','.join(STAGES)}")
    if len(set(chosen)) != len(chosen):
        raise DistillError("--stages names a stage twice")
    return [s for s in STAGES if s in chosen]  # always in the paper's order


def _stage_steps(args, stages: list[str]) -> dict[str, int]:
    """`--stage-steps pre=60,kd=180` as {stage: steps}; every stage named must be one that runs."""
    if not args.stage_steps:
        return {}
    steps: dict[str, int] = {}
    for item in args.stage_steps.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep or not value.strip().isdigit() or int(value) < 1:
            raise DistillError(f"--stage-steps {args.stage_steps!r}: expected STAGE=N with N >= 1, e.g. pre=60,kd=180")
        if name not in stages:
            raise DistillError(f"--stage-steps names {name!r}, which is not among the stages run ({','.join(stages)})")
        if name in steps:
            raise DistillError(f"--stage-steps names {name!r} twice")
        steps[name] = int(value)
    return steps


def _check_arguments(args, stages: list[str]) -> None:
    missing = [f"--{name}" for name in ("teacher", "student", "output") if not getattr(args, name)]
    if "kd" in stages and not args.data:
        missing.append("--data")
    if missing:
        raise DistillError(f"missing {', '.join(missing)}")
    if ("pre" in stages or "post" in stages) and not args.train:
        raise DistillError("the pre and post stages need --train (gold rows)")
    if args.student == "auto" and args.speedup is None and args.max_params is None:
        raise DistillError("--student auto needs --speedup or --max-params")
    from zhkd.distill.students import SHAPES, student_names

    if args.student not in (*SHAPES, "auto") and not Path(args.student).exists() and "/" not in args.student:
        raise DistillError(f"--student {args.student}: neither a catalogue shape ({', '.join(student_names())}), "
                           "'auto', nor a checkpoint")
    if "kd" not in stages and not args.task:
        raise DistillError("without the kd stage, give --task")


def _check_labels(what: str, labels: list[str], expected: list[str]) -> None:
    if labels != expected:
        raise DistillError(f"label names differ: the dataset has {expected}, {what} has {labels}; "
                           "distil with a teacher and student of the same label set")


def _kd_columns(task: str, stored_ids: bool) -> list[str]:
    """The shard columns the kd stage reads: the stored ids, or the text to tokenise again."""
    if get_task(task).per_token:
        inputs = ["input_ids", "token_starts"] if stored_ids else ["tokens"]
        return [*inputs, "tags", "teacher_logits"]
    inputs = ["input_ids"] if stored_ids else ["text", "text_pair"]
    return [*inputs, "label", "teacher_logits"]


def _student(args, teacher, teacher_tokenizer, task: str, label_names: list[str], log):
    """The student model and its tokenizer, built, selected or loaded as `--student` says."""
    from zhkd.distill.selection import select_student
    from zhkd.distill.students import SHAPES, build_model, init_from_teacher
    from zhkd.models import load_model, load_tokenizer, model_labels

    kind = get_task(task).model_kind
    name = args.student
    if name == "auto":
        name, _ = select_student(teacher, kind=kind, num_labels=len(label_names), speedup=args.speedup,
                                 max_params=args.max_params, log=log)
    if name not in SHAPES:
        student = load_model(kind, name)
        _check_labels(f"student {name}", model_labels(student), label_names)
        return student, load_tokenizer(name)
    student = build_model(name, kind=kind, vocab_size=teacher.config.vocab_size, labels=label_names,
                          pad_token_id=teacher_tokenizer.pad_token_id or 0, seed=args.seed)
    if args.layer_map != "none":
        log({"event": "init_from_teacher", "student": name, **init_from_teacher(student, teacher,
                                                                                 mapping=args.layer_map)})
    return student, teacher_tokenizer


def run(args: argparse.Namespace) -> int:
    if args.list_students:
        from zhkd.distill.students import student_names

        print("\n".join(student_names()))
        return 0
    stages = _stages(args)
    _check_arguments(args, stages)
    stage_steps = _stage_steps(args, stages)
    loss = LossConfig(temperature=args.temperature, alpha=args.alpha, soft=args.soft_loss)
    config = train_config(args)
    if not prepare_output(args.output, resume=args.resume):
        print(f"{args.output}: already complete", file=sys.stderr)
        return 0
    from zhkd.distill.train import distributed

    with distributed() as (rank, world, device):
        return _distil(args, stages, stage_steps, loss, config, rank, world, device)


def _distil(args, stages: list[str], stage_steps: dict[str, int], loss: LossConfig, config, rank: int, world: int,
            device: str) -> int:
    from dataclasses import replace

    from zhkd.distill.collate import Collator
    from zhkd.distill.loader import RowSource
    from zhkd.distill.predict import read_task_rows
    from zhkd.distill.reader import ShardReader
    from zhkd.distill.selection import dev_report, select_teacher
    from zhkd.distill.train import Stage, run_stages
    from zhkd.models import load_model, load_tokenizer, model_labels, tokenizer_fingerprint, weights_fingerprint
    from zhkd.shards import validate

    manifest = validate(args.data) if "kd" in stages else None  # refuse a partial or corrupted dataset first
    if manifest and args.task and args.task != manifest["task"]:
        raise DistillError(f"--task {args.task}, but {args.data} holds a {manifest['task']} dataset")
    task = manifest["task"] if manifest else args.task
    kind = get_task(task).model_kind
    teachers = [t.strip() for t in args.teacher.split(",") if t.strip()]
    label_names = manifest["label_names"] if manifest else model_labels(load_model(kind, teachers[0]))
    train_rows = read_task_rows(args.train, task, label_names)[0] if args.train else None
    dev_rows = read_task_rows(args.dev, task, label_names)[0] if args.dev else None

    events: list[dict] = []  # selections made before the run's log exists
    if len(teachers) > 1:
        if dev_rows is None:
            raise DistillError("comparing several teachers needs --dev")
        chosen, _ = select_teacher(teachers, dev_rows, task, label_names, max_length=config.max_length,
                                   log=events.append)
    else:
        chosen = teachers[0]
    teacher = load_model(kind, chosen)
    _check_labels(f"teacher {chosen}", model_labels(teacher), label_names)
    teacher_record = (manifest.get("teacher") or {}) if manifest else {}
    recorded = teacher_record.get("weights_sha256")
    if recorded and recorded != weights_fingerprint(chosen):
        raise DistillError(f"{args.data} was labelled by another teacher (weights sha256 {recorded[:12]}...) "
                           f"than {chosen}; rebuild the dataset with it, or name that teacher")
    teacher_tokenizer = load_tokenizer(chosen)
    student, tokenizer = _student(args, teacher, teacher_tokenizer, task, label_names, events.append)

    run_context = make_run(args.output, task, label_names, tokenizer, dev_rows, rank, world, device)
    for event in events:
        run_context.log(event)
    dataset_tokenizer = teacher_record.get("tokenizer_sha256") or (manifest or {}).get("tokenizer_sha256")
    stored_ids = bool(dataset_tokenizer) and tokenizer_fingerprint(tokenizer) == dataset_tokenizer
    reader = None
    if manifest:
        reader = ShardReader(args.data, seed=config.seed, rank=rank, world_size=world, check_checksums=False,
                             columns=_kd_columns(task, stored_ids), group_rows=config.group_rows(world))
    run_context.log({"event": "distill", "task": task, "teacher": chosen, "student": args.student,
                     "stages": stages, "stored_input_ids": stored_ids, "labels": label_names,
                     "dataset_rows": reader.num_rows if reader else 0})
    if dev_rows is not None and rank == 0 and not args.resume:
        report = dev_report(teacher, teacher_tokenizer, dev_rows, task, label_names, max_length=config.max_length,
                            device=device)
        run_context.log({"event": "dev", "stage": "teacher", **report})
    del teacher

    token_types = getattr(student.config, "type_vocab_size", 1) > 1
    gold_collate = Collator(task, tokenizer, max_length=config.max_length, token_types=token_types)
    plan = []
    for name in stages:
        stage_config = replace(config, max_steps=stage_steps.get(name, config.max_steps))
        if name == "kd":
            plan.append(Stage("kd", reader, Collator(task, tokenizer, max_length=config.max_length,
                                                      stored_ids=stored_ids, token_types=token_types),
                              stage_config, distilling=True, loss=loss))
        else:
            lr = (args.post_lr or config.lr / 10) if name == "post" else config.lr
            source = RowSource(train_rows, seed=config.seed, rank=rank, world_size=world,
                               group_rows=config.group_rows(world))
            plan.append(Stage(name, source, gold_collate, replace(stage_config, lr=lr)))
    summary = run_stages(student, plan, run_context, resume=args.resume)
    if rank == 0:
        for name, result in summary["stages"].items():
            print(stage_line(name, result))
        print(f"student: {args.output}")
    return 0
