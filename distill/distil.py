"""Distilling a student from a soft-label dataset, in the paper's stages: `distil(DistilConfig(...))`.

pre (fine-tune the student on gold labels), kd (distil on the shards), post (fine-tune again at a low
learning rate): any subset, always in that order. The student is a catalogue shape (started from the
teacher where the widths allow), `auto` (the most capable shape within `speedup` / `max_params`,
measured here), or a checkpoint. Several teachers are compared on the dev split first.

Stages are a name-to-recipe table (`STAGES`, in the order they run); `register_stage` adds one. A
recipe says what it reads (the dataset's soft labels, or gold rows) and makes its `Stage` from the
`Plan`, which holds what every stage may need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from zhkd.distill.config import LossConfig, TrainConfig
from zhkd.distill.errors import DistillError
from zhkd.distill.runs import RunResult, finished, make_run, prepare_output
from zhkd.tasks import get_task

SOFT, GOLD = "soft", "gold"  # what a stage reads: the dataset's shards, or the gold training rows
LAYER_MAPS = ("uniform", "bottom", "top", "none")


@dataclass
class Plan:
    """What the stages are made from: the options, the sources and the collators of one run."""

    config: DistilConfig
    reader: object | None  # the ShardReader over the dataset (None without a kd-like stage)
    soft_collate: object | None
    gold_rows: list[dict] | None
    gold_collate: object
    rank: int
    world: int

    def gold_source(self):
        from zhkd.distill.loader import RowSource

        training = self.config.training
        return RowSource(self.gold_rows, seed=training.seed, rank=self.rank, world_size=self.world,
                         group_rows=training.group_rows(self.world))


@dataclass(frozen=True)
class StageRecipe:
    name: str
    reads: str  # SOFT or GOLD
    make: Callable[[Plan], object]  # Plan -> train.Stage


STAGES: dict[str, StageRecipe] = {}


def register_stage(name: str, reads: str, make: Callable[[Plan], object]) -> None:
    """Add a stage; stages run in the order they were registered."""
    if reads not in (SOFT, GOLD):
        raise DistillError(f"stage {name}: reads {reads!r}, not {SOFT} or {GOLD}")
    STAGES[name] = StageRecipe(name, reads, make)


def _pre(plan: Plan):
    from zhkd.distill.train import Stage

    return Stage("pre", plan.gold_source(), plan.gold_collate, plan.config.training)


def _kd(plan: Plan):
    from zhkd.distill.train import Stage

    return Stage("kd", plan.reader, plan.soft_collate, plan.config.training, distilling=True, loss=plan.config.loss)


def _post(plan: Plan):
    from zhkd.distill.train import Stage

    training = plan.config.training
    return Stage("post", plan.gold_source(), plan.gold_collate,
                 replace(training, lr=plan.config.post_lr or training.lr / 10))


register_stage("pre", GOLD, _pre)
register_stage("kd", SOFT, _kd)
register_stage("post", GOLD, _post)


@dataclass
class DistilConfig:
    teachers: tuple[str, ...]  # several are compared on the dev split
    student: str  # a catalogue shape, "auto", or a checkpoint
    output: Path
    data: Path | None = None  # the soft-label dataset (zhkd build)
    stages: tuple[str, ...] | None = None  # None: every stage with gold rows (`train`), else the soft ones
    task: str | None = None  # needed when no dataset gives it
    train: Path | None = None  # gold rows of the gold stages
    dev: Path | None = None  # gold rows scored after every stage
    loss: LossConfig = field(default_factory=LossConfig)
    training: TrainConfig = field(default_factory=TrainConfig)
    post_lr: float | None = None  # default: the learning rate / 10
    layer_map: str = "uniform"  # which teacher layers start a catalogue student; "none": random
    speedup: float | None = None  # with student "auto": the least speed-up over the teacher
    max_params: float | None = None  # with student "auto": the most parameters
    resume: bool = False
    # Steps of named stages (e.g. {"pre": 60, "kd": 180}): one budget split across them; a stage not named
    # runs `training.max_steps` or its epochs.
    stage_steps: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        from zhkd.distill.students import SHAPES, student_names

        self.teachers = tuple(self.teachers or ())
        if self.stages is None:
            wanted = (SOFT, GOLD) if self.train else (SOFT,)
            self.stages = tuple(name for name, recipe in STAGES.items() if recipe.reads in wanted)
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown or not self.stages:
            raise DistillError(f"--stages: {', '.join(unknown) or 'empty'}; choose from {','.join(STAGES)}")
        if len(set(self.stages)) != len(self.stages):
            raise DistillError("--stages names a stage twice")
        self.stages = tuple(s for s in STAGES if s in self.stages)  # always in the table's order
        reads = {STAGES[s].reads for s in self.stages}
        missing = [flag for flag, value in (("--teacher", self.teachers), ("--student", self.student),
                                            ("--output", self.output)) if not value]
        if SOFT in reads and not self.data:
            missing.append("--data")
        if missing:
            raise DistillError(f"missing {', '.join(missing)}")
        self.output = Path(self.output)
        gold = [s for s in self.stages if STAGES[s].reads == GOLD]
        if gold and not self.train:
            raise DistillError(f"the {' and '.join(gold)} stage{'s need' if len(gold) > 1 else ' needs'} --train "
                               "(gold rows)")
        if SOFT not in reads and not self.task:
            soft_stages = ", ".join(s for s in STAGES if STAGES[s].reads == SOFT)
            raise DistillError(f"without a soft-label stage ({soft_stages}), give --task")
        if self.task:
            get_task(self.task)
        if self.student == "auto" and self.speedup is None and self.max_params is None:
            raise DistillError("--student auto needs --speedup or --max-params")
        if self.student not in (*SHAPES, "auto") and not Path(self.student).exists() and "/" not in self.student:
            raise DistillError(f"--student {self.student}: neither a catalogue shape ({', '.join(student_names())}), "
                               "'auto', nor a checkpoint")
        if self.layer_map not in LAYER_MAPS:
            raise DistillError(f"--layer-map {self.layer_map!r}; one of {', '.join(LAYER_MAPS)}")
        if self.post_lr is not None and self.post_lr <= 0:
            raise DistillError("--post-lr must be positive")
        for name, steps in self.stage_steps.items():
            if name not in self.stages:
                raise DistillError(f"--stage-steps names {name!r}, which is not among the stages run "
                                   f"({','.join(self.stages)})")
            if steps < 1:
                raise DistillError(f"--stage-steps {name}={steps}: expected STAGE=N with N >= 1")


def distil(config: DistilConfig) -> RunResult:
    """Run the configured stages on the student; its model, the stages' models, log and summary go to OUT."""
    from zhkd.distill.train import distributed

    claim = prepare_output(config, "distill", inputs=[config.data, config.train, config.dev, *config.teachers,
                                                      config.student])
    if claim is None:
        return finished(config.output)
    with claim, distributed() as (rank, world, device):
        return _distil(config, rank, world, device)


def _check_labels(what: str, labels: list[str], expected: list[str]) -> None:
    if labels != expected:
        raise DistillError(f"label names differ: the dataset has {expected}, {what} has {labels}; "
                           "distil with a teacher and student of the same label set")


def _check_head(what: str, model, task: str) -> None:
    from zhkd.models import head_mismatch

    mismatch = head_mismatch(model.config, task)
    if mismatch:
        raise DistillError(f"{what} {mismatch}")


def kd_columns(task: str, stored_ids: bool) -> list[str]:
    """The shard columns a soft-label stage reads: the stored ids, or the text to tokenise again."""
    spec = get_task(task)
    if spec.per_token:
        inputs = ["input_ids", "token_starts"] if stored_ids else ["tokens"]
    else:
        inputs = ["input_ids"] if stored_ids else ["text", "text_pair"]
    return [*inputs, spec.label_field, "teacher_logits"]


def _student(config: DistilConfig, teacher, teacher_tokenizer, task: str, label_names: list[str], log, rank: int,
             world: int):
    """The student model and its tokenizer, built, selected or loaded as `config.student` says."""
    from zhkd.distill.selection import select_student
    from zhkd.distill.students import SHAPES, build_model, init_from_teacher
    from zhkd.distill.train import decided_by_rank0
    from zhkd.models import load_model, load_tokenizer, model_labels

    spec = get_task(task)
    name = config.student
    if name == "auto":  # timed on rank 0 only: ranks that each timed could choose different students
        name = decided_by_rank0(lambda: select_student(teacher, kind=spec.model_kind, num_labels=len(label_names),
                                                       speedup=config.speedup, max_params=config.max_params,
                                                       log=log)[0], rank, world)
    if name not in SHAPES:
        student = load_model(spec.model_kind, name)
        _check_labels(f"student {name}", model_labels(student), label_names)
        _check_head(f"student {name}", student, task)
        return student, load_tokenizer(name)
    student = build_model(name, kind=spec.model_kind, vocab_size=teacher.config.vocab_size, labels=label_names,
                          pad_token_id=teacher_tokenizer.pad_token_id or 0, seed=config.training.seed,
                          problem_type=spec.problem_type)
    if config.layer_map != "none":
        log({"event": "init_from_teacher", "student": name, **init_from_teacher(student, teacher,
                                                                                 mapping=config.layer_map)})
    return student, teacher_tokenizer


def _distil(config: DistilConfig, rank: int, world: int, device: str) -> RunResult:
    from zhkd.distill.collate import Collator
    from zhkd.distill.predict import read_task_rows
    from zhkd.distill.reader import ShardReader
    from zhkd.distill.selection import dev_report, select_teacher
    from zhkd.distill.train import run_stages, validate_once
    from zhkd.models import load_model, load_tokenizer, model_labels, tokenizer_fingerprint, weights_fingerprint

    training = config.training
    soft = any(STAGES[s].reads == SOFT for s in config.stages)
    # Refuse a partial or corrupted dataset first; one rank verifies the checksums.
    manifest = validate_once(config.data, rank, world) if soft else None
    if manifest and config.task and config.task != manifest["task"]:
        raise DistillError(f"--task {config.task}, but {config.data} holds a {manifest['task']} dataset")
    task = manifest["task"] if manifest else config.task
    kind = get_task(task).model_kind
    label_names = manifest["label_names"] if manifest else model_labels(load_model(kind, config.teachers[0]))
    train_rows = read_task_rows(config.train, task, label_names)[0] if config.train else None
    dev_rows = read_task_rows(config.dev, task, label_names)[0] if config.dev else None

    events: list[dict] = []  # selections made before the run's log exists
    if len(config.teachers) > 1:
        if dev_rows is None:
            raise DistillError("comparing several teachers needs --dev")
        chosen, _ = select_teacher(config.teachers, dev_rows, task, label_names, max_length=training.max_length,
                                   log=events.append)
    else:
        chosen = config.teachers[0]
    teacher = load_model(kind, chosen)
    _check_labels(f"teacher {chosen}", model_labels(teacher), label_names)
    _check_head(f"teacher {chosen}", teacher, task)
    teacher_record = (manifest.get("teacher") or {}) if manifest else {}
    recorded = teacher_record.get("weights_sha256")
    if recorded and recorded != weights_fingerprint(chosen):
        raise DistillError(f"{config.data} was labelled by another teacher (weights sha256 {recorded[:12]}...) "
                           f"than {chosen}; rebuild the dataset with it, or name that teacher")
    teacher_tokenizer = load_tokenizer(chosen)
    student, tokenizer = _student(config, teacher, teacher_tokenizer, task, label_names, events.append, rank, world)

    run = make_run(config.output, task, label_names, tokenizer, dev_rows, rank, world, device)
    for event in events:
        run.log(event)
    dataset_tokenizer = teacher_record.get("tokenizer_sha256") or (manifest or {}).get("tokenizer_sha256")
    stored_ids = bool(dataset_tokenizer) and tokenizer_fingerprint(tokenizer) == dataset_tokenizer
    reader = None
    if manifest:
        reader = ShardReader(config.data, seed=training.seed, rank=rank, world_size=world, check_checksums=False,
                             columns=kd_columns(task, stored_ids), group_rows=training.group_rows(world))
    run.log({"event": "distill", "task": task, "teacher": chosen, "student": config.student,
             "stages": list(config.stages), "stored_input_ids": stored_ids, "labels": label_names,
             "dataset_rows": reader.num_rows if reader else 0})
    if dev_rows is not None and rank == 0 and not config.resume:
        report = dev_report(teacher, teacher_tokenizer, dev_rows, task, label_names, max_length=training.max_length,
                            device=device)
        run.log({"event": "dev", "stage": "teacher", **report})
    del teacher

    token_types = getattr(student.config, "type_vocab_size", 1) > 1
    collate = {"max_length": training.max_length, "token_types": token_types, "num_labels": len(label_names)}
    plan = Plan(config, reader, Collator(task, tokenizer, stored_ids=stored_ids, **collate) if reader else None,
                train_rows, Collator(task, tokenizer, **collate), rank, world)
    stages = [STAGES[name].make(plan) for name in config.stages]
    stages = [replace(stage, train=replace(stage.train, max_steps=config.stage_steps[stage.name]))
              if stage.name in config.stage_steps else stage for stage in stages]
    summary = run_stages(student, stages, run, resume=config.resume)
    return RunResult(True, config.output, summary, rank)
