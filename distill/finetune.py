"""Fine-tuning a teacher or a student on gold labels: `finetune(FinetuneConfig(...))`.

`init` is any checkpoint (a pre-trained MLM or encoder gets a fresh task head; this is how the demo's
teacher is made from its MLM), or "scratch": a catalogue shape at random, with a character vocabulary
made from the training text, or with `tokenizer`'s. The head is the task's (`zhkd.tasks`): a
multilabel model says `problem_type="multi_label_classification"` in its config.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from zhkd.distill.config import TrainConfig
from zhkd.distill.errors import DistillError
from zhkd.distill.runs import RunResult, finished, make_run, prepare_output
from zhkd.tasks import get_task

SCRATCH = "scratch"


@dataclass
class FinetuneConfig:
    task: str
    train: Path  # gold rows (.jsonl or .jsonl.gz)
    init: str  # a checkpoint (directory or hub id), or "scratch"
    output: Path
    dev: Path | None = None  # gold rows scored after every epoch
    shape: str | None = None  # with init "scratch": a catalogue shape
    tokenizer: str | None = None  # with init "scratch": this checkpoint's tokenizer, not a character vocabulary
    vocab_size: int = 8000  # with init "scratch": most entries of the character vocabulary
    labels: tuple[str, ...] | None = None  # label names in id order (default: the training file's, sorted)
    training: TrainConfig = field(default_factory=TrainConfig)
    resume: bool = False

    def __post_init__(self):
        from zhkd.models import SPECIAL_TOKENS

        get_task(self.task)
        self.train, self.output = Path(self.train), Path(self.output)
        if self.init != SCRATCH and (self.shape or self.tokenizer):
            raise DistillError("--shape and --tokenizer go with --init scratch")
        if self.init == SCRATCH:
            from zhkd.distill.students import get_shape

            if not self.shape:
                raise DistillError("--init scratch needs --shape (see zhkd distill --list-students)")
            get_shape(self.shape)  # an unknown shape is refused before anything is written
        if self.vocab_size <= len(SPECIAL_TOKENS):
            raise DistillError(f"--vocab-size must exceed the {len(SPECIAL_TOKENS)} special tokens")


def finetune(config: FinetuneConfig) -> RunResult:
    """Train `config.init` (or a fresh shape) on the gold rows; the model, log and summary go to OUT."""
    from zhkd.distill.predict import read_task_rows
    from zhkd.distill.train import distributed

    # Every input is read (and refused, if it must be) before OUT is claimed and anything written.
    train_rows, label_names = read_task_rows(config.train, config.task, list(config.labels or []) or None)
    dev_rows = read_task_rows(config.dev, config.task, label_names)[0] if config.dev else None
    claim = prepare_output(config, "finetune", inputs=[config.train, config.dev, config.init, config.tokenizer])
    if claim is None:
        return finished(config.output)
    with claim, distributed() as (rank, world, device):
        return _finetune(config, train_rows, dev_rows, label_names, rank, world, device)


def row_texts(rows: list[dict], task: str) -> Iterator[str]:
    """The text of each gold row: its characters (per-token tasks, space-separated) or text and pair."""
    per_token = get_task(task).per_token
    return (" ".join(r["tokens"]) if per_token else r["text"] + r.get("text_pair", "") for r in rows)


def scratch_model(config: FinetuneConfig, train_rows: list[dict], label_names: list[str], rank: int, world: int):
    """A catalogue shape at random, and its tokenizer (built from the training text, or given)."""
    from zhkd.distill.students import build_model, get_shape
    from zhkd.distill.train import barrier
    from zhkd.models import char_vocab, load_tokenizer, save_char_tokenizer

    spec = get_task(config.task)
    if config.tokenizer:
        tokenizer = load_tokenizer(config.tokenizer)
    else:
        if rank == 0:
            save_char_tokenizer(char_vocab(row_texts(train_rows, config.task), max_size=config.vocab_size),
                                config.output)
        barrier(world)  # the other ranks read the tokenizer rank 0 wrote
        tokenizer = load_tokenizer(config.output)
    model = build_model(get_shape(config.shape), kind=spec.model_kind, vocab_size=len(tokenizer), labels=label_names,
                        pad_token_id=tokenizer.pad_token_id or 0, seed=config.training.seed,
                        problem_type=spec.problem_type)
    return model, tokenizer


def pretrained_model(config: FinetuneConfig, label_names: list[str]):
    """A checkpoint with a task head for these labels; a head that does not fit is initialised afresh."""
    import torch

    from zhkd.models import load_model, load_tokenizer

    spec = get_task(config.task)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.training.seed)
        model = load_model(spec.model_kind, config.init, num_labels=len(label_names),
                           id2label=dict(enumerate(label_names)),
                           label2id={name: i for i, name in enumerate(label_names)}, ignore_mismatched_sizes=True,
                           problem_type=spec.problem_type)
    return model, load_tokenizer(config.init)


# Training rows the start's state similarity is measured on: enough tokens for a stable mean, a second's work.
SIMILARITY_ROWS = 64


def collapse_warning(config: FinetuneConfig, similarity: float) -> str | None:
    """One line when the start's encoder hardly tells inputs apart (see `COLLAPSED_SIMILARITY`), else None."""
    from zhkd.distill.pretrain import COLLAPSED_SIMILARITY

    if similarity <= COLLAPSED_SIMILARITY:
        return None
    return (f"warning: {config.init}: its top-layer states are nearly the same at every position (mean cosine "
            f"{similarity:.3f} > {COLLAPSED_SIMILARITY}), as in a masked LM's early collapse; fine-tuning from it "
            "may not learn: pre-train it longer, or use --init scratch")


def _finetune(config: FinetuneConfig, train_rows, dev_rows, label_names, rank: int, world: int,
              device: str) -> RunResult:
    from zhkd.distill.collate import Collator
    from zhkd.distill.loader import RowSource
    from zhkd.distill.pretrain import state_similarity
    from zhkd.distill.train import Stage, run_stages

    training = config.training
    similarity = None
    if config.init == SCRATCH:
        model, tokenizer = scratch_model(config, train_rows, label_names, rank, world)
    else:
        model, tokenizer = pretrained_model(config, label_names)
        if rank == 0:  # the one rank that logs and prints
            similarity = state_similarity(model, tokenizer, list(row_texts(train_rows[:SIMILARITY_ROWS], config.task)),
                                          max_length=training.max_length)
            warning = collapse_warning(config, similarity)
            if warning:
                print(warning, file=sys.stderr, flush=True)
    run = make_run(config.output, config.task, label_names, tokenizer, dev_rows, rank, world, device)
    run.log({"event": "finetune", "task": config.task, "init": config.init, "shape": config.shape,
             "labels": label_names, "train_rows": len(train_rows), "dev_rows": len(dev_rows) if dev_rows else 0,
             "start_state_similarity": similarity})
    collate = Collator(config.task, tokenizer, max_length=training.max_length,
                       token_types=getattr(model.config, "type_vocab_size", 1) > 1, num_labels=len(label_names))
    source = RowSource(train_rows, seed=training.seed, rank=rank, world_size=world,
                       group_rows=training.group_rows(world))
    summary = run_stages(model, [Stage("finetune", source, collate, training)], run, resume=config.resume)
    return RunResult(True, config.output, summary, rank)
