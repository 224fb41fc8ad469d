"""`zhkd demo`: the seed paper in miniature, end to end on the bundled corpora, from one command.

For sentiment (`classification`) and People's Daily NER (`ner`): pre-train a small character MLM,
fine-tune the teacher from it, build the soft-label datasets with Beam (with and without
augmentation), choose the student for a target speed-up, distil it, and evaluate an ablation on one
test split. Every step is a `zhkd` command run in-process; the report lists them so any step can be
rerun by hand.
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
    mlm_shape: str  # also the teacher's shape: the teacher is fine-tuned from the MLM
    mlm_steps: int
    teacher_epochs: int  # sentiment's; NER's steps are cheaper (short sentences, grouped by length)
    ner_teacher_epochs: int
    teacher_lr: float  # models this small, barely pre-trained, learn far too slowly at BERT's 5e-5
    # Every stage of every ablation student runs this many steps, so the rows compare data, not compute:
    # KD with augmentation sees more distinct rows in the same steps, not more steps.
    student_steps: int
    student_lr: float
    num_aug: int
    target_speedup: float  # the student must be at least this much faster than the teacher (CPU, batch 1)
    eval_runs: int
    throughput_batch: int = 32
    batch_size: int = 32
    max_length: int = 128


SCALES = {
    "tiny": Scale("tiny", train=80, dev=40, test=60, mlm_shape="small", mlm_steps=8, teacher_epochs=1,
                  ner_teacher_epochs=1, teacher_lr=5e-4, student_steps=3, student_lr=5e-4, num_aug=2,
                  target_speedup=2.0, eval_runs=5, throughput_batch=4),
    "small": Scale("small", train=2000, dev=400, test=1000, mlm_shape="small", mlm_steps=100, teacher_epochs=3,
                   ner_teacher_epochs=4, teacher_lr=5e-4, student_steps=150, student_lr=5e-4, num_aug=2,
                   target_speedup=3.0, eval_runs=50),
    "full": Scale("full", train=0, dev=0, test=0, mlm_shape="rbt3", mlm_steps=20000, teacher_epochs=3,
                  ner_teacher_epochs=3, teacher_lr=1e-4, student_steps=4000, student_lr=3e-4, num_aug=8,
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


DEMO_TASKS = (
    DemoTask("classification", "chnsenti", "Sentiment (chnsenti)", group_by_length=False),
    DemoTask("ner", "pd98-ner", "NER (pd98-ner)", group_by_length=True),
)



@dataclass(frozen=True)
class AblationRow:
    name: str  # the model's name in the evaluation
    title: str
    stages: str
    dataset: str | None  # soft-label dataset the kd stage reads


# The ablation, in the order of the report. Every student has the same shape and initialisation.
ABLATION = (
    AblationRow("gold", "student, gold labels only", "pre", None),
    AblationRow("kd-noaug", "KD without augmentation", "kd", "soft-noaug"),
    AblationRow("kd-aug", "KD with augmentation", "kd", "soft-aug"),
    AblationRow("kd-aug-prepost", "KD with augmentation + pre/post fine-tuning", "pre,kd,post", "soft-aug"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", choices=list(SCALES), default="small",
                        help="tiny (about 3 minutes), small (the default, under 20 minutes on 2 cores) or full")
    parser.add_argument("--output", type=Path, default=Path("demo-out"), help="directory for everything it makes")
    parser.add_argument("--teacher", action="append", metavar="TASK=M",
                        help="use this fine-tuned teacher for a task instead of training one (repeatable)")
    parser.add_argument("--mlm", help="use this masked-LM checkpoint instead of pre-training one")
    parser.add_argument("--seed", type=int, default=0)


def _sample(corpus: str, split: str, limit: int) -> list[dict]:
    """A deterministic sample: rows ordered by a hash of their id, the first `limit` kept (0: all)."""
    rows = sorted(load_corpus(corpus, split), key=lambda r: hashlib.blake2b(r["id"].encode(), digest_size=8).digest())
    return rows[:limit] if limit else rows


def _write_jsonl(rows: list[dict], path: Path) -> Path:
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


def _select_student(teacher_dir: Path, task: str, scale: Scale, record: Path) -> dict:
    """Measure the catalogue's students against the teacher on this CPU; keep the most capable that is
    at least `target_speedup` faster. Kept in `record`, so a resumed demo goes on with the same student."""
    from zhkd.distill.latency import measure_latency
    from zhkd.outputs import write_atomic

    if record.is_file():
        return json.loads(record.read_text("utf-8"))
    from zhkd.distill.selection import select_student
    from zhkd.models import load_model

    teacher = load_model(get_task(task).model_kind, teacher_dir)
    events: list[dict] = []
    shape, candidates = select_student(
        teacher, kind=get_task(task).model_kind, num_labels=teacher.config.num_labels,
        speedup=scale.target_speedup, log=events.append,
        latency_ms=lambda model: measure_latency(model, seq_len=64, batch_size=1, runs=scale.eval_runs,
                                                 device="cpu").p50_ms,
    )
    selection = {"chosen": shape, "target_speedup": scale.target_speedup,
                 "candidates": [asdict(c) for c in candidates], "teacher_ms": events[-1]["teacher_ms"]}
    write_atomic(record, json.dumps(selection, indent=1).encode("utf-8"))
    return selection


def write_splits(spec: DemoTask, scale: Scale, out: Path) -> dict[str, Path]:
    return {split: _write_jsonl(_sample(spec.corpus, split, getattr(scale, split)),
                                out / "data" / f"{spec.corpus}.{split}.jsonl")
            for split in ("train", "dev", "test")}


def run_task(spec: DemoTask, scale: Scale, out: Path, data: dict[str, Path], mlm: Path, steps: Steps,
             teacher: str | None, seed: int) -> dict:
    """Teacher, datasets, student selection, the ablation's students, and their evaluation for one task."""
    task_dir = out / spec.task
    common = ["--batch-size", scale.batch_size, "--max-length", scale.max_length, "--seed", seed,
              "--group-by-length" if spec.group_by_length else "--no-group-by-length"]
    teacher_epochs = scale.ner_teacher_epochs if get_task(spec.task).per_token else scale.teacher_epochs
    if teacher is None:
        teacher = task_dir / "teacher"
        steps.run(f"{spec.task}: fine-tune the teacher from the MLM", "finetune", "--task", spec.task,
                  "--train", data["train"], "--dev", data["dev"], "--init", mlm, "--output", teacher,
                  "--epochs", teacher_epochs, "--lr", scale.teacher_lr, *common, *_continue(teacher))
    build_common = ["build", "--task", spec.task, "--input", data["train"], "--teacher", teacher,
                    "--mlm-model", mlm, "--truncate", "--max-chars", scale.max_length - 2,
                    "--max-length", scale.max_length, "--num-shards", 4, "--seed", seed]
    steps.run(f"{spec.task}: soft labels with augmentation", *build_common, "--num-aug", scale.num_aug,
              "--output", task_dir / "soft-aug")
    steps.run(f"{spec.task}: soft labels without augmentation", *build_common, "--num-aug", 0,
              "--output", task_dir / "soft-noaug")

    started = time.monotonic()
    selection = _select_student(Path(teacher), spec.task, scale, task_dir / "selection.json")
    steps.note(f"{spec.task}: student selection", time.monotonic() - started)

    students = {}
    for row in ABLATION:
        students[row.name] = task_dir / "students" / row.name
        argv = ["distill", "--task", spec.task, "--teacher", teacher, "--student", selection["chosen"],
                "--stages", row.stages, "--train", data["train"], "--dev", data["dev"],
                "--output", students[row.name], "--max-steps", scale.student_steps,
                "--lr", scale.student_lr, *common, *_continue(students[row.name])]
        if row.dataset is not None:
            argv += ["--data", task_dir / row.dataset]
        steps.run(f"{spec.task}: {row.title}", *argv)

    evaluation_dir = task_dir / "evaluation"
    if (evaluation_dir / "evaluation.json").is_file():  # a rerun: these very models were evaluated already
        print(f"{evaluation_dir}: already complete", file=sys.stderr)
    else:
        steps.run(f"{spec.task}: evaluate", "evaluate", "--task", spec.task, "--test", data["test"],
                  "--teacher", f"teacher={teacher}", "--output", evaluation_dir, "--runs", scale.eval_runs,
                  "--throughput-batch", scale.throughput_batch, "--devices", "cpu",
                  *(a for name, path in students.items() for a in ("--model", f"{name}={path}")))
    evaluation = json.loads((evaluation_dir / "evaluation.json").read_text("utf-8"))
    return {"task": spec.task, "title": spec.title, "corpus": spec.corpus, "teacher": str(teacher),
            "student_selection": selection,
            "datasets": {name: str(task_dir / name) for name in ("soft-aug", "soft-noaug")},
            "data": {split: str(path) for split, path in data.items()}, "evaluation": evaluation}


# --- the report -------------------------------------------------------------------------------------------

PAPER = {"speedup": 6.7, "compression": 13.6, "pct_of_teacher": 95.0, "pct_with_strategies": 98.0}


def _entry(evaluation: dict, name: str) -> dict:
    return next(e for e in evaluation["models"] if e["name"] == name)


def _cell(value: float | None, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def summary_rows(results: list[dict]) -> list[dict]:
    """Per task: the teacher against the full recipe's student, with the paper's figures beside them."""
    rows = []
    for result in results:
        evaluation = result["evaluation"]
        teacher, student = _entry(evaluation, "teacher"), _entry(evaluation, ABLATION[-1].name)
        rows.append({
            "task": result["title"], "metric": evaluation["primary_metric"],
            "teacher_score": teacher["score"], "student_score": student["score"],
            "pct_of_teacher": student["score_pct_of_teacher"],
            "speedup_vs_teacher": student["vs_teacher"]["speedup"]["cpu"],
            "compression_vs_teacher": student["vs_teacher"]["compression"],
            "speedup_vs_bert_base": student["vs_reference"]["speedup"]["cpu"],
            "compression_vs_bert_base": student["vs_reference"]["compression"],
            "student_shape": result["student_selection"]["chosen"],
        })
    return rows


def summary_table(rows: list[dict]) -> str:
    header = ("| task | teacher | student | % of teacher | speed-up vs teacher | compression vs teacher "
              "| speed-up vs BERT-base shape | compression vs BERT-base shape |")
    lines = [header, "|" + "---|" * 8]
    for r in rows:
        lines.append(
            f"| {r['task']} ({r['metric']}) | {r['teacher_score']:.4f} | {r['student_score']:.4f} "
            f"({r['student_shape']}) | {_cell(r['pct_of_teacher'], '.1f', '%')} "
            f"| {r['speedup_vs_teacher']:.1f}x | {r['compression_vs_teacher']:.1f}x "
            f"| {r['speedup_vs_bert_base']:.1f}x | {r['compression_vs_bert_base']:.1f}x |")
    lines.append(f"| paper (BERT-base teacher) | | | {PAPER['pct_of_teacher']:.0f}% / "
                 f"{PAPER['pct_with_strategies']:.0f}% with both strategies | | | {PAPER['speedup']}x "
                 f"| {PAPER['compression']}x |")
    return "\n".join(lines)


def ablation_table(result: dict) -> str:
    evaluation = result["evaluation"]
    metrics = evaluation["metrics"]
    lines = ["| model | " + " | ".join(metrics) + " | % of teacher | parameters | CPU p50 ms | speed-up vs teacher "
             "| speed-up vs BERT-base shape | compression vs BERT-base shape |",
             "|" + "---|" * (len(metrics) + 7)]
    titles = {row.name: row.title for row in ABLATION} | {"teacher": "teacher"}
    for name in [row.name for row in ABLATION] + ["teacher"]:
        e = _entry(evaluation, name)
        vs_teacher = e["vs_teacher"]["speedup"]["cpu"] if e["vs_teacher"] else 1.0
        lines.append(
            f"| {titles[name]} | " + " | ".join(f"{e['scores'][m]:.4f}" for m in metrics)
            + f" | {_cell(e['score_pct_of_teacher'], '.1f', '%')} | {e['parameters'] / 1e6:.2f}M "
            f"| {e['latency']['cpu']['batch_1']['p50_ms']:.2f} | {vs_teacher:.1f}x "
            f"| {e['vs_reference']['speedup']['cpu']:.1f}x | {e['vs_reference']['compression']:.1f}x |")
    return "\n".join(lines)


def selection_table(selection: dict) -> str:
    lines = [f"Target: at least {selection['target_speedup']}x faster than the teacher "
             f"({selection['teacher_ms']:.2f} ms at batch 1, 64 tokens, CPU); chosen: **{selection['chosen']}**.", "",
             "| shape | parameters | p50 ms | speed-up | meets |", "|---|---|---|---|---|"]
    for c in selection["candidates"]:
        lines.append(f"| {c['shape']} | {c['params'] / 1e6:.2f}M | {c['latency_ms']:.2f} | {c['speedup']:.1f}x "
                     f"| {'yes' if c['meets'] else 'no'} |")
    return "\n".join(lines)


def render_report(report: dict) -> str:
    m = report["machine"]
    parts = [
        f"# zhkd demo report ({report['scale']} scale)", "",
        f"`{report['command']}` on {report['date']}, {m['cpu']} ({m['cpus']} CPUs), Python {m['python']}, "
        f"torch {m['torch']}; {report['total_seconds'] / 60:.1f} minutes in all.", "",
        "## Summary against the paper", "",
        "The student is the full recipe (KD with augmentation, fine-tuned before and after). Speed-up is the "
        "ratio of median latency at batch 1 on this CPU; compression the ratio of parameters. The BERT-base "
        "shape is timed with random weights and this vocabulary, since speed depends on shape alone. Every "
        f"ablation student has the same shape and runs {report['settings']['student_steps']} steps per stage, "
        "so the rows differ in what the students learn from, not in how long they train.", "",
        summary_table(report["summary"]), "",
    ]
    for result in report["tasks"]:
        task = result["task"]
        parts += [
            f"## {result['title']}", "",
            f"Test split: {result['evaluation']['test']['rows']:,} rows. Teacher: `{result['teacher']}`.", "",
            ablation_table(result), "",
            f"![score against speed-up]({task}/evaluation/evaluation.png)", "",
            "### Student selection", "", selection_table(result["student_selection"]), "",
            "### Data", "",
            f"Soft-label datasets with their data cards: [with augmentation]({task}/soft-aug/README.md), "
            f"[without]({task}/soft-noaug/README.md). Full evaluation: [{task}/evaluation/evaluation.md]"
            f"({task}/evaluation/evaluation.md).", "",
        ]
    parts += ["## Steps", "", "| step | seconds | command |", "|---|---|---|"]
    parts += [f"| {s['step']} | {s['seconds']:.1f} | {'`' + s['command'] + '`' if s['command'] else ''} |"
              for s in report["steps"]]
    return "\n".join(parts) + "\n"


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
    settings = {"scale": scale.name, "seed": args.seed, "teachers": teachers, "mlm": args.mlm}
    with prepare_output(out, settings):
        return _run(args, scale, out, teachers)


def _run(args: argparse.Namespace, scale: Scale, out: Path, teachers: dict[str, str]) -> int:
    from zhkd.outputs import write_atomic

    steps = Steps(out / "steps.jsonl")
    data = {spec.task: write_splits(spec, scale, out) for spec in DEMO_TASKS}
    mlm = Path(args.mlm) if args.mlm else out / "mlm"
    if not args.mlm:  # the augmentation's mlm operator needs one even when both teachers are given
        texts = ",".join(str(data[spec.task]["train"]) for spec in DEMO_TASKS)
        steps.run("pre-train the character MLM", "pretrain", "--input", texts, "--output", mlm,
                  "--shape", scale.mlm_shape, "--max-steps", scale.mlm_steps, "--max-length", scale.max_length,
                  "--seed", args.seed, *_continue(mlm))
    results = [run_task(spec, scale, out, data[spec.task], mlm, steps, teachers.get(spec.task), args.seed)
               for spec in DEMO_TASKS]
    argv = ["zhkd demo", "--scale", scale.name, "--output", str(out)]
    report = {
        "command": " ".join(argv + [f"--teacher {t}" for t in args.teacher or []] + ([f"--mlm {args.mlm}"]
                                                                                       if args.mlm else [])),
        "scale": scale.name, "settings": asdict(scale),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": _machine(),
        "total_seconds": round(sum(step["seconds"] for step in steps.merged()), 1),
        "summary": summary_rows(results), "tasks": results, "steps": steps.merged(),
    }
    write_atomic(out / "report.md", render_report(report).encode("utf-8"))
    write_atomic(out / "report.json", (json.dumps(report, ensure_ascii=False, indent=1) + "\n").encode("utf-8"))
    print(f"\n{summary_table(report['summary'])}\n\nreport: {out / 'report.md'} "
          f"({report['total_seconds'] / 60:.1f} minutes)")
    return 0
