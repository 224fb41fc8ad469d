"""`zhkd select-teacher`: choose the teacher among candidates, as the paper does, and say why.

Every candidate is scored on the dev rows; the best headline score wins, and candidates tied with it go
to the one with the lower expected calibration error (its soft labels are the better targets). When a
classical baseline is given (its dev score, or train rows to fit it on), the choice is set against it:
a teacher worth distilling beats what a user gets in seconds. Prints readable lines; `--output` keeps
the same as JSON for a report.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from zhkd.distill.errors import DistillError
from zhkd.tasks import get_task, task_names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=task_names())
    parser.add_argument("--candidate", action="append", default=[], metavar="[NAME=]PATH",
                        help="a fine-tuned teacher checkpoint; give at least two (NAME defaults to the directory name)")
    parser.add_argument("--dev", required=True, type=Path, help="labelled dev rows that decide (.jsonl or .jsonl.gz)")
    beat = parser.add_mutually_exclusive_group()
    beat.add_argument("--baseline-score", type=float,
                      help="the classical baseline's score on the same dev rows, for the choice to beat")
    beat.add_argument("--baseline-train", type=Path,
                      help="train the task's classical baseline on these rows (the teacher's train split), its "
                           "setting chosen on --dev, and set the choice against its dev score")
    parser.add_argument("--margin", type=float, default=0.0,
                        help="how far above the baseline the chosen teacher must be to beat it, in the headline "
                             "metric's units (e.g. 0.02 for 2 points of accuracy; default 0)")
    parser.add_argument("--tie-tolerance", type=float, default=0.0,
                        help="candidates this close to the best dev score count as tied (default 0: exactly equal)")
    parser.add_argument("--output", type=Path, help="write the choice, the figures and the reasons here as JSON")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier select-teacher --output (only one; only once the new one is complete)")
    parser.add_argument("--batch-size", type=int, default=32, help="scoring batch size (default 32)")
    parser.add_argument("--max-length", type=int, default=512, help="scoring truncation length (default 512)")


def _baseline(args, label_names: list[str], dev_rows: list[dict]) -> dict | None:
    if args.baseline_score is not None:
        return {"score": args.baseline_score, "source": "given"}
    if args.baseline_train is None:
        return None
    import tempfile

    from zhkd.distill.baseline import train_baseline
    from zhkd.distill.predict import read_task_rows

    train_rows = read_task_rows(args.baseline_train, args.task, label_names=label_names)[0]
    with tempfile.TemporaryDirectory(prefix="zhkd-select-baseline-") as folder:
        trained = train_baseline(args.task, train_rows, label_names, folder, dev_rows=dev_rows)
    metric = f"dev_{get_task(args.task).headline}"
    score = next(t[metric] for t in trained.trials if t["settings"] == trained.settings)
    setting = ", ".join(f"{k}={v:g}" for k, v in trained.settings.items())
    return {"score": score, "source": f"{trained.model.kind} {setting} trained on {len(train_rows):,} rows of "
                                      f"{args.baseline_train}", "record": trained.record()}


def run(args: argparse.Namespace) -> int:
    from zhkd.commands.evaluate import named_models
    from zhkd.outputs import replacing_files

    candidates = named_models(args.candidate, "candidates")
    repeated = sorted({p for p in candidates.values() if list(candidates.values()).count(p) > 1})
    if repeated:
        raise DistillError(f"{repeated[0]} is given twice")
    if len(candidates) < 2:
        raise DistillError("select-teacher compares candidates: give at least two --candidate")
    if args.tie_tolerance < 0 or args.margin < 0:
        raise DistillError("--tie-tolerance and --margin must not be negative")
    if args.output is None:
        return _select(args, candidates, None)
    inputs = [args.dev, args.baseline_train, *candidates.values()]
    with replacing_files([args.output], inputs=inputs, overwrite=args.overwrite, ours=_is_choice,
                         command="select-teacher") as (output,):
        return _select(args, candidates, output)


def _is_choice(path: Path) -> bool:
    """An earlier select-teacher output: JSON with the keys this command writes."""
    try:
        written = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(written, dict) and {"task", "dev", "chosen", "candidates", "reasons"} <= written.keys()


def _select(args: argparse.Namespace, candidates: dict[str, str], output) -> int:
    from zhkd.distill.evaluate import label_names_of
    from zhkd.distill.predict import read_task_rows
    from zhkd.distill.selection import explain_teacher_choice, select_teacher

    label_names = label_names_of(next(iter(candidates.values())))
    dev_rows, label_names = read_task_rows(args.dev, args.task, label_names=label_names)
    baseline = _baseline(args, label_names, dev_rows)
    chosen, figures = select_teacher(list(candidates.values()), dev_rows, args.task, label_names,
                                     tie_tolerance=args.tie_tolerance, batch_size=args.batch_size,
                                     max_length=args.max_length)
    choice = explain_teacher_choice(args.task, list(candidates), figures, chosen, tie_tolerance=args.tie_tolerance,
                                    baseline=baseline, margin=args.margin)
    choice = {"task": args.task, "dev": {"path": str(args.dev), "rows": len(dev_rows)}, **choice}
    metric = choice["metric"]
    print(f"select-teacher: {args.task}, dev {metric} on {len(dev_rows):,} rows of {args.dev}; "
          f"strategy: {choice['strategy']}")
    for row in choice["candidates"]:
        mark = "  <- chosen" if row["name"] == choice["chosen"]["name"] else ""
        print(f"  {row['name']:<20s} {metric} {row['score']:.4f}  ECE {row['ece']:.4f}  {row['path']}{mark}")
    for line in choice["reasons"]:
        print(line)
    if output is not None:
        output.write(json.dumps(choice, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {args.output}")
    return 0
