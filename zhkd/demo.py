"""`zhkd demo`: the seed paper in miniature, end to end on the bundled corpora, from one command.

For sentiment (`classification`) and People's Daily NER (`ner`): start from zhkd's embedded character
encoder (the `tiny` scale pre-trains its own MLM in seconds, `full` a larger one for a GPU), fine-tune
two teacher candidates (one from that MLM, a smaller one from scratch) and choose the teacher with
`zhkd select-teacher`, build the soft-label datasets with Beam (with and without
augmentation), choose the student for a target speed-up, distil the ablation's students over several
seeds (each with the same total number of optimiser steps), and evaluate them on one test split.
Every step is a `zhkd` command run in-process; the report lists them so any step can be rerun by
hand. The report itself (tables, intervals, the generated reading) is `zhkd.demo_report`.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from zhkd.models import embedded_encoder
from zhkd.pipelines.corpora import load_corpus
from zhkd.pipelines.errors import PipelineError
from zhkd.tasks import get_task


@dataclass(frozen=True)
class Scale:
    """How much of the corpora and how many steps; `tiny` is the test's, `small` what `make demo` runs."""

    name: str
    train: int  # source examples per task; 0 takes the whole split
    dev: int
    test: int
    mlm_shape: str  # also the shape of the teacher candidate fine-tuned from the MLM (`from-mlm`)
    # Steps of the demo's own MLM; 0 starts from the embedded encoder instead (`zhkd.models.EMBEDDED_ENCODER`,
    # whose shape is `mlm_shape`). A short MLM is worse than none: at 60 steps it is still in the collapse
    # where every position says the same (`zhkd.distill.pretrain.COLLAPSED_SIMILARITY`).
    mlm_steps: int
    teacher_epochs: int  # sentiment's; NER's steps are cheaper (short sentences, grouped by length)
    ner_teacher_epochs: int
    teacher_lr: float  # models this small, barely pre-trained, learn far too slowly at BERT's 5e-5
    # Every ablation student takes this many optimiser steps in all, whatever its stages (the pre,kd,post
    # row splits them by `stage_shares`), so the rows compare what the students learn from, not compute.
    student_steps: int
    student_lr: float
    seeds: int  # students per ablation row (seeds seed, seed+1, ...): scores are means with t-intervals
    num_aug: int
    target_speedup: float  # the student must be at least this much faster than the teacher (CPU, batch 1)
    eval_runs: int
    throughput_batch: int = 32
    batch_size: int = 32
    max_length: int = 128
    stage_shares: tuple[tuple[str, float], ...] = (("pre", 0.25), ("kd", 0.5), ("post", 0.25))

    def __post_init__(self):
        if self.seeds < 2:
            raise ValueError("an interval over seeds needs at least 2 seeds")


SCALES = {
    "tiny": Scale("tiny", train=80, dev=40, test=60, mlm_shape="small", mlm_steps=8, teacher_epochs=1,
                  ner_teacher_epochs=1, teacher_lr=5e-4, student_steps=4, student_lr=5e-4, seeds=3, num_aug=2,
                  target_speedup=2.0, eval_runs=5, throughput_batch=4),
    # Sized by bench/demo_budget.py to finish `make demo` within 20 minutes on 2 cores (docs/evaluate.md).
    # The student must be the paper's 6.7x faster: `micro`, sub-cloned from the teacher, kept 98% (sentiment)
    # and 92% (NER) of it on dev after 120 gold steps (bench/measurements/student_start.json).
    "small": Scale("small", train=2000, dev=400, test=1000, mlm_shape="small", mlm_steps=0, teacher_epochs=3,
                   ner_teacher_epochs=4, teacher_lr=5e-4, student_steps=80, student_lr=5e-4, seeds=3, num_aug=2,
                   target_speedup=6.7, eval_runs=30),
    # Whole-split teachers and students sub-cloned from them, for the >= 6.7x student (`micro` against a
    # `small` teacher): not run here; bench/demo_budget.py prices it from measured step costs.
    "medium": Scale("medium", train=0, dev=0, test=0, mlm_shape="small", mlm_steps=0, teacher_epochs=2,
                    ner_teacher_epochs=2, teacher_lr=5e-4, student_steps=600, student_lr=5e-4, seeds=3, num_aug=2,
                    target_speedup=6.7, eval_runs=30),
    "full": Scale("full", train=0, dev=0, test=0, mlm_shape="rbt3", mlm_steps=20000, teacher_epochs=3,
                  ner_teacher_epochs=3, teacher_lr=1e-4, student_steps=12000, student_lr=3e-4, seeds=3, num_aug=8,
                  target_speedup=6.0, eval_runs=30, max_length=256),
}


@dataclass(frozen=True)
class DemoTask:
    task: str
    corpus: str
    title: str
    # Measured on 2,000 rows, 3 epochs, 2 cores: batching by length made the teacher's steps 1.6x faster
    # on both tasks, raised NER's dev F1 (0.13 to 0.17) but cost sentiment 4 points of accuracy.
    group_by_length: bool
    # How far above the classical baseline (dev headline score) the chosen teacher must be to beat it, issue
    # 11's gate: sentiment at least 2 points of accuracy above it; NER at least its entity F1 (margin 0).
    teacher_margin: float


DEMO_TASKS = (
    DemoTask("classification", "chnsenti", "Sentiment (chnsenti)", group_by_length=False, teacher_margin=0.02),
    DemoTask("ner", "pd98-ner", "NER (pd98-ner)", group_by_length=True, teacher_margin=0.0),
)


@dataclass(frozen=True)
class TeacherCandidate:
    name: str
    directory: str  # under the task's directory
    init: tuple[str, ...]  # how `zhkd finetune` starts it; None stands for the demo's MLM


# The teachers `zhkd select-teacher` chooses between when the user gives none: the paper's "choose the
# teacher well", by dev score (ties by calibration), set against the classical baseline. Both are trained
# alike (the scale's epochs, lr, seed, batch and length); only the start and the size differ.
TEACHER_CANDIDATES = (
    # A pre-trained start: the scale's `mlm_shape` fine-tuned from the MLM (the embedded encoder, or the scale's
    # own; the directory is still `teacher`, as it always was).
    TeacherCandidate("from-mlm", "teacher", ("--init", None)),
    # A smaller model from scratch with its own character vocabulary: on a few thousand rows a barely
    # pre-trained transformer memorises, and a smaller one may generalise as well; `mini` is ~4x cheaper per
    # step than `small`, so the second candidate keeps `make demo` within its budget.
    TeacherCandidate("scratch-mini", "teacher-scratch-mini", ("--init", "scratch", "--shape", "mini")),
)



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", choices=list(SCALES), default="small",
                        help="tiny (the test's), small (the default, make demo), medium (whole splits, a >= 6.7x "
                             "student; projected under 2 hours on 2 cores) or full (for a GPU); see docs/evaluate.md")
    parser.add_argument("--output", type=Path, default=Path("demo-out"), help="directory for everything it makes")
    parser.add_argument("--teacher", action="append", metavar="TASK=M",
                        help="use this fine-tuned teacher for a task instead of training one (repeatable)")
    parser.add_argument("--mlm", help="use this masked-LM checkpoint instead of pre-training one")
    parser.add_argument("--seed", type=int, default=0,
                        help="the teacher's and datasets' seed; the ablation's students take seeds SEED, SEED+1, ...")
    parser.add_argument("--install-record", type=Path,
                        help="JSON {seconds, finished} of the environment's install (make writes "
                             ".venv/install.json), quoted in the report")


def sample_rows(corpus: str, split: str, limit: int) -> list[dict]:
    """A deterministic sample: rows ordered by a hash of their id, the first `limit` kept (0: all)."""
    rows = sorted(load_corpus(corpus, split), key=lambda r: hashlib.blake2b(r["id"].encode(), digest_size=8).digest())
    return rows[:limit] if limit else rows


def sample_texts(split: str, limit: int) -> list[str]:
    """Every demo task's `sample_rows` as plain texts (an NER row's characters joined), as `zhkd pretrain`
    reads the demo's files: what the demo's own MLM pre-trains on, for the benches that price or probe it."""
    return ["".join(r["tokens"]) if "tokens" in r else r["text"]
            for spec in DEMO_TASKS for r in sample_rows(spec.corpus, split, limit)]


def write_jsonl(rows: list[dict], path: Path) -> Path:
    """The split file; a rerun finds it already written (the same bytes), and refuses one that differs."""
    from zhkd.outputs import write_atomic

    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    if path.exists():
        if path.read_bytes() != data:
            raise PipelineError(f"{path} differs from the split this demo writes; choose another --output")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)
    return path


def _continue(path: Path) -> list[str]:
    """`--resume` when a step's output already exists: a rerun of the demo continues each step where it
    stopped (or finds it complete) instead of starting over or removing anything."""
    from zhkd.outputs import MARKER

    return ["--resume"] if (path / MARKER).is_file() else []


class Steps:
    """Runs `zhkd` commands in-process, timing each and keeping the list for the report.

    A rerun of the demo starts from the records its `steps.jsonl` already holds, so the report gives each
    step the time it took in all runs (a step found complete adds next to nothing), and its first command.
    """

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.records: list[dict] = ([json.loads(line) for line in log_path.read_text("utf-8").splitlines()]
                                    if log_path.is_file() else [])

    def merged(self) -> list[dict]:
        steps: dict[str, dict] = {}
        for record in self.records:
            if record["step"] in steps:
                steps[record["step"]]["seconds"] = round(steps[record["step"]]["seconds"] + record["seconds"], 1)
            else:
                steps[record["step"]] = dict(record)
        return list(steps.values())

    def run(self, label: str, *argv: object) -> float:
        from zhkd.cli import main

        args = [str(a) for a in argv]
        print(f"\n== demo: {label}\n   zhkd {' '.join(args)}", file=sys.stderr, flush=True)
        started = time.monotonic()
        code = main(args)
        seconds = time.monotonic() - started
        if code != 0:
            raise PipelineError(f"step '{label}' failed (exit {code}): zhkd {' '.join(args)}")
        self.note(label, seconds, command="zhkd " + " ".join(args))
        return seconds

    def note(self, label: str, seconds: float, command: str | None = None) -> None:
        self.records.append({"step": label, "seconds": round(seconds, 1), "command": command})
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(self.records[-1], ensure_ascii=False) + "\n")


def choose_student(teacher_dir: Path, task: str, scale: Scale) -> dict:
    """Measure the catalogue's students against the teacher on this CPU; keep the most capable that is
    at least `target_speedup` faster. When none is (a busy machine can slow any measurement), keep the
    fastest and record that the target was missed, rather than stop a demo half done."""
    from zhkd.distill.errors import DistillError
    from zhkd.distill.latency import measure_latency
    from zhkd.distill.selection import select_student
    from zhkd.models import load_model

    teacher = load_model(get_task(task).model_kind, teacher_dir)
    events: list[dict] = []
    try:
        shape, candidates = select_student(
            teacher, kind=get_task(task).model_kind, num_labels=teacher.config.num_labels,
            speedup=scale.target_speedup, log=events.append,
            latency_ms=lambda model: measure_latency(model, seq_len=64, batch_size=1, runs=scale.eval_runs,
                                                     device="cpu").p50_ms,
        )
        measured, met = [asdict(c) for c in candidates], True
    except DistillError:
        measured, met = events[-1]["candidates"], False
        shape = max(measured, key=lambda c: c["speedup"])["shape"]
    return {"chosen": shape, "target_speedup": scale.target_speedup, "target_met": met,
            "candidates": measured, "teacher_ms": events[-1]["teacher_ms"]}


def kept_selection(teacher_dir: Path, task: str, scale: Scale, record: Path) -> dict:
    """`choose_student`'s choice, kept in `record`, so a resumed demo goes on with the same student."""
    from zhkd.outputs import write_atomic

    if record.is_file():
        return json.loads(record.read_text("utf-8"))
    selection = choose_student(teacher_dir, task, scale)
    write_atomic(record, json.dumps(selection, indent=1).encode("utf-8"))
    return selection


def write_splits(spec: DemoTask, scale: Scale, out: Path) -> dict[str, Path]:
    return {split: write_jsonl(sample_rows(spec.corpus, split, getattr(scale, split)),
                                out / "data" / f"{spec.corpus}.{split}.jsonl")
            for split in ("train", "dev", "test")}


def choose_teacher(spec: DemoTask, scale: Scale, task_dir: Path, data: dict[str, Path], mlm: Path, steps: Steps,
                   teacher: str | None, seed: int, common: list) -> tuple[str, dict | None]:
    """The teacher the rest of the demo distils from, and `zhkd select-teacher`'s choice (None when the user
    gave the teacher: then no candidate is trained).

    Every candidate of `TEACHER_CANDIDATES` is fine-tuned (resuming, or found complete, on a rerun), then
    `select-teacher` picks one on the dev rows and sets it against the classical baseline trained on the
    same train rows, with the task's `teacher_margin`. Its choice is kept in `teacher_choice.json`, so a
    rerun goes on with the same teacher without choosing again.
    """
    if teacher is not None:
        return teacher, None
    record = task_dir / "teacher_choice.json"
    epochs = scale.ner_teacher_epochs if get_task(spec.task).per_token else scale.teacher_epochs
    candidates = []
    for candidate in TEACHER_CANDIDATES:
        path = task_dir / candidate.directory
        candidates += ["--candidate", f"{candidate.name}={path}"]
        init = [mlm if arg is None else arg for arg in candidate.init]
        steps.run(f"{spec.task}: teacher candidate {candidate.name}", "finetune", "--task", spec.task,
                  "--train", data["train"], "--dev", data["dev"], *init, "--output", path, "--epochs", epochs,
                  "--lr", scale.teacher_lr, "--seed", seed, *common, *_continue(path))
    if record.is_file():  # a rerun: these very candidates were compared already
        print(f"{record}: already chosen", file=sys.stderr)
    else:
        steps.run(f"{spec.task}: choose the teacher", "select-teacher", "--task", spec.task, *candidates,
                  "--dev", data["dev"], "--baseline-train", data["train"], "--margin", spec.teacher_margin,
                  "--batch-size", scale.batch_size, "--max-length", scale.max_length, "--output", record)
    choice = json.loads(record.read_text("utf-8"))
    return choice["chosen"]["path"], choice


def run_task(spec: DemoTask, scale: Scale, out: Path, data: dict[str, Path], mlm: Path, steps: Steps,
             teacher: str | None, seed: int) -> dict:
    """Teacher (chosen among candidates), datasets, student selection, the ablation's students over seeds,
    and their evaluation."""
    from zhkd import demo_report

    task_dir = out / spec.task
    common = ["--batch-size", scale.batch_size, "--max-length", scale.max_length,
              "--group-by-length" if spec.group_by_length else "--no-group-by-length"]
    teacher, teacher_choice = choose_teacher(spec, scale, task_dir, data, mlm, steps, teacher, seed, common)
    build_common = ["build", "--task", spec.task, "--input", data["train"], "--teacher", teacher,
                    "--mlm-model", mlm, "--truncate", "--max-chars", scale.max_length - 2,
                    "--max-length", scale.max_length, "--num-shards", 4, "--seed", seed]
    steps.run(f"{spec.task}: soft labels with augmentation", *build_common, "--num-aug", scale.num_aug,
              "--output", task_dir / "soft-aug")
    steps.run(f"{spec.task}: soft labels without augmentation", *build_common, "--num-aug", 0,
              "--output", task_dir / "soft-noaug")

    started = time.monotonic()
    selection = kept_selection(Path(teacher), spec.task, scale, task_dir / "selection.json")
    steps.note(f"{spec.task}: student selection", time.monotonic() - started)

    seeds = [seed + k for k in range(scale.seeds)]
    shares = dict(scale.stage_shares)
    stage_steps = {row.name: demo_report.split_steps(scale.student_steps, row.stages.split(","), shares)
                   for row in demo_report.ABLATION}
    students: dict[str, dict[int, Path]] = {row.name: {} for row in demo_report.ABLATION}
    for student_seed in seeds:  # seed by seed, so an interrupted run still holds whole replicates
        for row in demo_report.ABLATION:
            path = task_dir / "students" / demo_report.student_name(row.name, student_seed)
            students[row.name][student_seed] = path
            argv = ["distill", "--task", spec.task, "--teacher", teacher, "--student", selection["chosen"],
                    "--stages", row.stages, "--train", data["train"], "--output", path,
                    "--stage-steps", ",".join(f"{k}={v}" for k, v in stage_steps[row.name].items()),
                    "--lr", scale.student_lr, "--seed", student_seed, *common, *_continue(path)]
            if row.dataset is not None:
                argv += ["--data", task_dir / row.dataset]
            steps.run(f"{spec.task}: {row.title}, seed {student_seed}", *argv)

    evaluation_dir = task_dir / "evaluation"
    models = [a for row, by_seed in students.items() for s, path in by_seed.items()
              for a in ("--model", f"{demo_report.student_name(row, s)}={path}")]
    if (evaluation_dir / "evaluation.json").is_file():  # a rerun: these very models were evaluated already
        print(f"{evaluation_dir}: already complete", file=sys.stderr)
    else:
        steps.run(f"{spec.task}: evaluate", "evaluate", "--task", spec.task, "--test", data["test"],
                  "--teacher", f"teacher={teacher}", "--output", evaluation_dir, "--runs", scale.eval_runs,
                  "--throughput-batch", scale.throughput_batch, "--devices", "cpu", *models,
                  # the model a practitioner tries first, on the same rows: teacher and students are set against it
                  "--baseline", "--train", data["train"], "--dev", data["dev"])
    evaluation = json.loads((evaluation_dir / "evaluation.json").read_text("utf-8"))
    return {"task": spec.task, "title": spec.title, "corpus": spec.corpus, "teacher": str(teacher),
            "teacher_choice": teacher_choice, "student_selection": selection,
            "datasets": {name: str(task_dir / name) for name in ("soft-aug", "soft-noaug")},
            "data": {split: str(path) for split, path in data.items()}, "evaluation": evaluation,
            "students": {row: {str(s): str(p) for s, p in by_seed.items()} for row, by_seed in students.items()},
            "ablation": demo_report.ablation(evaluation, students, stage_steps, seeds)}


# --- the report -------------------------------------------------------------------------------------------


def selection_table(selection: dict) -> str:
    missed = "" if selection.get("target_met", True) else " (no shape met the target here: the fastest is kept)"
    lines = [f"Target: at least {selection['target_speedup']}x faster than the teacher "
             f"({selection['teacher_ms']:.2f} ms at batch 1, 64 tokens, CPU); chosen: **{selection['chosen']}**"
             f"{missed}.", "",
             "| shape | parameters | p50 ms | speed-up | meets |", "|---|---|---|---|---|"]
    for c in selection["candidates"]:
        lines.append(f"| {c['shape']} | {c['params'] / 1e6:.2f}M | {c['latency_ms']:.2f} | {c['speedup']:.1f}x "
                     f"| {'yes' if c['meets'] else 'no'} |")
    return "\n".join(lines)


def render_report(report: dict) -> str:
    from zhkd.demo_report import ablation_table, reading, run_line, summary_table, teacher_choice_section, teacher_note

    settings = report["settings"]
    shares = ", ".join(f"{stage} {share:.0%}" for stage, share in settings["stage_shares"])
    parts = [
        f"# zhkd demo report ({report['scale']} scale)", "", run_line(report), "",
        "## Summary against the paper", "",
        "The student is the full recipe (KD with augmentation, fine-tuned before and after). Speed-up is the "
        "ratio of median latency at batch 1 on this CPU; compression the ratio of parameters. Every ablation "
        f"student has the same shape and start and takes {settings['student_steps']} optimiser steps in all (the "
        f"pre/kd/post student splits them: {shares}); each row is trained with {settings['seeds']} seeds and "
        "shown as mean ± the 95% t-interval over them.", "",
        summary_table(report["summary"]), "", teacher_note(report["summary"]), "",
        "## Reading", "", *(line for result in report["tasks"] for line in (reading(result), "")),
    ]
    for result in report["tasks"]:
        task = result["task"]
        parts += [
            f"## {result['title']}", "",
            f"Test split: {result['evaluation']['test']['rows']:,} rows. Teacher: `{result['teacher']}`.", "",
            ablation_table(result), "",
            f"![score against speed-up]({task}/evaluation/evaluation.png)", "",
            "### Teacher selection", "", teacher_choice_section(result["teacher_choice"]), "",
            "### Student selection", "", selection_table(result["student_selection"]), "",
            "### Data", "",
            f"Soft-label datasets with their data cards: [with augmentation]({task}/soft-aug/README.md), "
            f"[without]({task}/soft-noaug/README.md). Full evaluation, every seed's student: "
            f"[{task}/evaluation/evaluation.md]({task}/evaluation/evaluation.md).", "",
        ]
    parts += ["## Steps", "", "| step | seconds | command |", "|---|---|---|"]
    parts += [f"| {s['step']} | {s['seconds']:.1f} | {'`' + s['command'] + '`' if s['command'] else ''} |"
              for s in report["steps"]]
    return "\n".join(parts) + "\n"


def read_install_record(path: Path | None, run_started: float) -> dict | None:
    """The environment's install time as `make` recorded it ({"seconds", "finished" (UTC ISO)}), with how
    long before this run it finished; None when there is no record."""
    if path is None or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text("utf-8"))
        finished = datetime.datetime.fromisoformat(record["finished"].replace("Z", "+00:00"))
        seconds = float(record["seconds"])
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise PipelineError(f"{path}: not an install record ({err})") from None
    return {"seconds": seconds, "finished": record["finished"],
            "finished_before_run_s": round(run_started - finished.timestamp(), 1)}


def _machine() -> dict:
    import os

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}


def prepare_output(out: Path, settings: dict):
    """Claim the demo's directory (see `zhkd.outputs`): a new or empty one, or one an earlier demo with these
    very settings made, which this run continues. Nothing in it is ever removed."""
    from zhkd.outputs import claim, inspect, require_same_settings

    found = inspect(out, "demo")
    require_same_settings(found, settings, "a demo")
    return claim(out, "demo", settings=settings, found=found)


def run(args: argparse.Namespace) -> int:
    scale = SCALES[args.scale]
    out = args.output
    teachers = {}
    for spec in args.teacher or []:
        task, sep, path = spec.partition("=")
        if not sep or task not in {t.task for t in DEMO_TASKS}:
            raise PipelineError(f"--teacher {spec!r}: expected TASK=PATH with TASK one of classification, ner")
        teachers[task] = path
    from zhkd.outputs import refuse_inputs

    for path in [*teachers.values(), *([args.mlm] if args.mlm else [])]:
        if not (Path(path) / "config.json").is_file():
            raise PipelineError(f"{path}: not a checkpoint directory (no config.json)")
    refuse_inputs(out, [*teachers.values(), args.mlm], directory=True)
    install = read_install_record(args.install_record, time.time())
    settings = {"scale": scale.name, "seed": args.seed, "teachers": teachers, "mlm": args.mlm}
    with prepare_output(out, settings):
        return _run(args, scale, out, teachers, install)


def _run(args: argparse.Namespace, scale: Scale, out: Path, teachers: dict[str, str], install: dict | None) -> int:
    from zhkd.demo_report import summary_row, summary_table
    from zhkd.outputs import write_atomic

    steps = Steps(out / "steps.jsonl")
    data = {spec.task: write_splits(spec, scale, out) for spec in DEMO_TASKS}
    # The augmentation's mlm operator needs one even when both teachers are given.
    if args.mlm:
        mlm = Path(args.mlm)
    elif scale.mlm_steps:
        mlm = out / "mlm"
        texts = ",".join(str(data[spec.task]["train"]) for spec in DEMO_TASKS)
        steps.run("pre-train the character MLM", "pretrain", "--input", texts, "--output", mlm,
                  "--shape", scale.mlm_shape, "--max-steps", scale.mlm_steps, "--max-length", scale.max_length,
                  "--seed", args.seed, *_continue(mlm))
    else:
        mlm = embedded_encoder()
    results = [run_task(spec, scale, out, data[spec.task], mlm, steps, teachers.get(spec.task), args.seed)
               for spec in DEMO_TASKS]
    argv = ["zhkd demo", "--scale", scale.name, "--output", str(out)]
    report = {
        "command": " ".join(argv + [f"--teacher {t}" for t in args.teacher or []] + ([f"--mlm {args.mlm}"]
                                                                                       if args.mlm else [])),
        "scale": scale.name, "settings": asdict(scale),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": _machine(),
        "total_seconds": round(sum(step["seconds"] for step in steps.merged()), 1), "install": install,
        "summary": [summary_row(result) for result in results], "tasks": results, "steps": steps.merged(),
    }
    write_atomic(out / "report.md", render_report(report).encode("utf-8"))
    write_atomic(out / "report.json", (json.dumps(report, ensure_ascii=False, indent=1) + "\n").encode("utf-8"))
    print(f"\n{summary_table(report['summary'])}\n\nreport: {out / 'report.md'} "
          f"({report['total_seconds'] / 60:.1f} minutes)")
    return 0
