"""`zhkd distill`: a student from a soft-label dataset, in the paper's stages (`zhkd.distill.distil.distil`).

pre (fine-tune the student on gold labels), kd (distil on the shards), post (fine-tune again at a low
learning rate): any subset, in that order. The student is a catalogue shape (started from the teacher
where the widths allow), `auto` (the most capable shape within `--speedup` / `--max-params`, measured
here), or a checkpoint. Several comma-separated teachers are compared on the dev split first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zhkd.commands.training_options import add_training_arguments, stage_line, train_config
from zhkd.distill.config import LossConfig
from zhkd.distill.errors import DistillError
from zhkd.distill.losses import SOFT_LOSSES, SOFT_SUMMARIES
from zhkd.tasks import task_names


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _stage_steps(value: str | None) -> dict[str, int]:
    """`pre=60,kd=180` as {stage: steps}; `DistilConfig` checks that the stages run and the counts."""
    steps: dict[str, int] = {}
    for item in _csv(value):
        name, sep, count = (part.strip() for part in item.partition("="))
        if not sep or not count.isdigit():
            raise DistillError(f"--stage-steps {value!r}: expected STAGE=N with N >= 1, e.g. pre=60,kd=180")
        if name in steps:
            raise DistillError(f"--stage-steps names {name!r} twice")
        steps[name] = int(count)
    return steps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from zhkd.distill.distil import LAYER_MAPS, STAGES

    d = LossConfig()
    parser.add_argument("--list-students", action="store_true", help="print the catalogue's student shapes and exit")
    parser.add_argument("--data", type=Path, help="a soft-label dataset directory (zhkd build)")
    parser.add_argument("--teacher", help="the teacher checkpoint; several, comma-separated, are compared on --dev")
    parser.add_argument("--student", help="a catalogue shape, 'auto' (choose by --speedup/--max-params), "
                                          "or a checkpoint")
    parser.add_argument("--output", type=Path, help="directory for the student, log and checkpoints")
    parser.add_argument("--stages", help=f"comma-separated subset of {','.join(STAGES)} (default: all with --train, "
                                         "else kd)")
    parser.add_argument("--task", choices=task_names(), help="the task, when no --data gives it")
    parser.add_argument("--train", type=Path, help="gold training rows for the pre and post stages")
    parser.add_argument("--dev", type=Path, help="gold dev rows: the score after every stage")
    parser.add_argument("--temperature", type=float, default=d.temperature,
                        help=f"temperature of the KD loss: of the softmax, or of each label's sigmoid for multilabel "
                             f"(default {d.temperature})")
    parser.add_argument("--alpha", type=float, default=d.alpha,
                        help=f"weight of the gold-label loss in kd; 1-alpha goes to the soft loss (default {d.alpha})")
    parser.add_argument("--soft-loss", choices=tuple(SOFT_LOSSES), default=d.soft,
                        help="; ".join(f"{name}: {SOFT_SUMMARIES[name]}" for name in SOFT_LOSSES)
                        + f" (default {d.soft})")
    parser.add_argument("--stage-steps", metavar="STAGE=N,...",
                        help="steps of each named stage, e.g. pre=60,kd=180,post=60: a total split across the "
                             "stages (a stage not named runs --max-steps or --epochs)")
    parser.add_argument("--post-lr", type=float, help="learning rate of the post stage (default --lr / 10)")
    parser.add_argument("--layer-map", choices=LAYER_MAPS, default="uniform",
                        help="which teacher layers start a catalogue student (default uniform; none: random)")
    parser.add_argument("--speedup", type=float, help="with --student auto: the least speed-up over the teacher")
    parser.add_argument("--max-params", type=float, help="with --student auto: the most parameters (e.g. 12e6)")
    add_training_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.list_students:
        from zhkd.distill.students import student_names

        print("\n".join(student_names()))
        return 0
    from zhkd.distill.distil import DistilConfig, distil

    config = DistilConfig(
        teachers=_csv(args.teacher), student=args.student, output=args.output, data=args.data,
        stages=_csv(args.stages) if args.stages is not None else None, task=args.task, train=args.train,
        dev=args.dev, loss=LossConfig(temperature=args.temperature, alpha=args.alpha, soft=args.soft_loss),
        training=train_config(args), post_lr=args.post_lr, layer_map=args.layer_map, speedup=args.speedup,
        max_params=args.max_params, resume=args.resume, stage_steps=_stage_steps(args.stage_steps),
    )
    result = distil(config)
    if not result.ran:
        print(f"{args.output}: already complete", file=sys.stderr)
    elif result.rank == 0:
        for name, stage in result.summary["stages"].items():
            print(stage_line(name, stage))
        print(f"student: {args.output}")
    return 0
