"""The task table: everything zhkd knows about a task type, in one entry.

Every stage reads a task's facts from here instead of comparing task names: which input fields a row
has, how it is labelled, which transformers head scores it, which metrics judge it, which columns
its shards hold and which augmentations it allows. Adding a task type is one entry below (plus its
metric and its losses where its label kind is new). Pure Python, no imports beyond the standard
library: every part of zhkd, and `zhkd --help`, can read it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

from zhkd.errors import ZhkdError

# How a row is labelled; each kind has its own gold column, logits shape, head and losses.
SEQUENCE = "sequence"  # one label per row (or pair): a `label` id, one logit per label
TOKEN = "token"  # one tag per token: `tags` ids, one row of logits per token
MULTILABEL = "multilabel"  # any subset of the labels per row: `labels` ids, one independent logit per label
LABEL_KINDS = (SEQUENCE, TOKEN, MULTILABEL)
MULTI_LABEL_PROBLEM = "multi_label_classification"  # transformers' problem_type of a sigmoid-per-label head


@dataclass(frozen=True)
class TaskSpec:
    """One task type. `fields` are the text inputs in order (a second one is encoded as the pair)."""

    name: str
    summary: str
    fields: tuple[str, ...]
    label_kind: str
    label_field: str  # the gold column of input rows and shards
    metrics: tuple[str, ...]  # reported in this order
    headline: str  # the one metric that ranks models, picks checkpoints and gives "% of teacher"
    span_safe: bool = False  # augmentations must keep every token (and its tag) aligned
    card_category: str = "text-classification"  # the Hugging Face dataset-card task category

    @property
    def has_pair(self) -> bool:
        return len(self.fields) > 1

    @property
    def per_token(self) -> bool:
        return self.label_kind == TOKEN

    @property
    def multilabel(self) -> bool:
        return self.label_kind == MULTILABEL

    @property
    def gold_is_list(self) -> bool:
        """Whether a row's gold is a list of label ids (tags per token, or a set of labels) or one id."""
        return self.label_kind != SEQUENCE

    @property
    def model_kind(self) -> str:
        """The transformers head: `token` (AutoModelForTokenClassification) or `sequence`."""
        return "token" if self.per_token else "sequence"

    @property
    def problem_type(self) -> str | None:
        """The `problem_type` a transformers config needs for this head's own loss to match ours."""
        return MULTI_LABEL_PROBLEM if self.multilabel else None


TASKS: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> TaskSpec:
    """Add a task type; the hook a new task (or a user's own) goes through."""
    if spec.label_kind not in LABEL_KINDS:
        raise ZhkdError(f"task {spec.name}: unknown label kind {spec.label_kind!r}; one of {', '.join(LABEL_KINDS)}")
    if spec.headline not in spec.metrics:
        raise ZhkdError(f"task {spec.name}: headline metric {spec.headline!r} is not among {spec.metrics}")
    TASKS[spec.name] = spec
    return spec


register(TaskSpec(
    name="classification", summary="one label per text (e.g. sentiment)", fields=("text",),
    label_kind=SEQUENCE, label_field="label", metrics=("accuracy", "macro_f1"), headline="accuracy",
))
register(TaskSpec(
    name="pair", summary="one label per pair of texts (e.g. paraphrase, entailment)", fields=("text", "text_pair"),
    label_kind=SEQUENCE, label_field="label", metrics=("accuracy", "f1"), headline="accuracy",
))
register(TaskSpec(
    name="ner", summary="one BIO tag per token (named entities)", fields=("tokens",),
    label_kind=TOKEN, label_field="tags", metrics=("precision", "recall", "f1"), headline="f1",
    span_safe=True, card_category="token-classification",
))
register(TaskSpec(
    name="multilabel", summary="any subset of the labels per text (e.g. which entity types a sentence names)",
    fields=("text",), label_kind=MULTILABEL, label_field="labels", metrics=("micro_f1", "macro_f1", "exact_match"),
    headline="micro_f1",
))


def task_names() -> tuple[str, ...]:
    return tuple(TASKS)


def get_task(name: str) -> TaskSpec:
    """The task's entry; an unknown name is the user's mistake and says which names exist."""
    try:
        return TASKS[name]
    except KeyError:
        raise ZhkdError(f"unknown task {name!r}; one of {', '.join(TASKS)}") from None
