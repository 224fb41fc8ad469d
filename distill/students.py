"""The catalogue of model shapes: students, and the BERT-base reference they are measured against."""

from __future__ import annotations

from dataclasses import dataclass

from zhkd.distill.errors import DistillError


@dataclass(frozen=True)
class Shape:
    name: str
    layers: int
    hidden: int
    heads: int
    intermediate: int
    max_positions: int = 512
    student: bool = True  # False for the reference, which selection never picks


SHAPES: dict[str, Shape] = {
    s.name: s
    for s in (
        Shape("bert-base", 12, 768, 12, 3072, student=False),
        Shape("rbt6", 6, 768, 12, 3072),
        Shape("rbt4", 4, 768, 12, 3072),
        Shape("rbt3", 3, 768, 12, 3072),
        Shape("tinybert6", 6, 768, 12, 3072),
        Shape("tinybert4", 4, 312, 12, 1200),
        Shape("rbt4-h312", 4, 312, 12, 1248),
        Shape("small", 4, 256, 4, 1024),
        Shape("mini", 2, 128, 2, 512),
    )
}


def get_shape(name: str) -> Shape:
    try:
        return SHAPES[name]
    except KeyError:
        raise DistillError(f"unknown shape {name!r}; the catalogue has {', '.join(SHAPES)}") from None


def build_model(shape: Shape | str, *, kind: str, vocab_size: int, num_labels: int | None = None,
                labels: list[str] | None = None, pad_token_id: int = 0, seed: int = 0,
                problem_type: str | None = None):
    """A randomly initialised BERT of a catalogue shape ("sequence", "token" or "mlm" head); `problem_type`
    is the task's (`TaskSpec.problem_type`: a multi-label head says so in its config)."""
    import torch
    import transformers

    shape = get_shape(shape) if isinstance(shape, str) else shape
    config = transformers.BertConfig(
        vocab_size=vocab_size, hidden_size=shape.hidden, num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads, intermediate_size=shape.intermediate,
        max_position_embeddings=shape.max_positions, pad_token_id=pad_token_id, problem_type=problem_type,
    )
    if labels is not None:
        config.id2label = dict(enumerate(labels))
        config.label2id = {name: i for i, name in enumerate(labels)}
    elif num_labels is not None:
        config.num_labels = num_labels
    model_class = {
        "sequence": transformers.BertForSequenceClassification,
        "token": transformers.BertForTokenClassification,
        "mlm": transformers.BertForMaskedLM,
    }
    if kind not in model_class:
        raise DistillError(f"unknown model kind {kind!r}; one of {', '.join(model_class)}")
    # Weight init draws from torch's global RNG; fork it so building a model never disturbs the caller's.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class[kind](config)


LAYER_MAPPINGS = ("uniform", "bottom", "top")


def student_names() -> list[str]:
    """The shapes selection may pick (the reference shape is not one), in catalogue order."""
    return [s.name for s in SHAPES.values() if s.student]


def mapped_layers(teacher_layers: int, student_layers: int, mapping: str) -> list[int]:
    """Which teacher layer initialises each student layer.

    uniform: every k-th layer ending at the top (12 -> 3 gives 3, 7, 11, 0-based); bottom: the first
    layers; top: the last.
    """
    if mapping not in LAYER_MAPPINGS:
        raise DistillError(f"unknown layer mapping {mapping!r}; one of {', '.join(LAYER_MAPPINGS)}")
    if student_layers > teacher_layers:
        raise DistillError(f"a {student_layers}-layer student cannot take layers from a {teacher_layers}-layer teacher")
    if mapping == "bottom":
        return list(range(student_layers))
    if mapping == "top":
        return list(range(teacher_layers - student_layers, teacher_layers))
    return [round((i + 1) * teacher_layers / student_layers) - 1 for i in range(student_layers)]


def _copy_matching(target, source) -> list[str]:
    """Copy every tensor whose name and shape agree; return the names copied."""
    import torch

    theirs = source.state_dict()
    copied = []
    with torch.no_grad():
        for name, tensor in target.state_dict().items():
            if name in theirs and theirs[name].shape == tensor.shape:
                tensor.copy_(theirs[name])
                copied.append(name)
    return copied


def init_from_teacher(student, teacher, *, mapping: str = "uniform") -> dict:
    """Start a student from its teacher where the widths allow it; leave the rest as initialised.

    Embeddings (word, position, type, LayerNorm) are copied tensor by tensor where shapes agree (so a
    shared tokenizer and hidden size copy all of them); encoder layers follow `mapping` when hidden,
    intermediate and head sizes all match; the pooler and classifier are copied when they fit.
    Returns what was copied, for the training log.
    """
    s_config, t_config = student.config, teacher.config
    s_base, t_base = student.base_model, teacher.base_model
    report: dict = {"mapping": mapping, "embeddings": [], "layers": {}, "head": []}
    if s_config.hidden_size != t_config.hidden_size:
        report["reason"] = f"hidden {s_config.hidden_size} != teacher's {t_config.hidden_size}: random init"
        return report
    report["embeddings"] = _copy_matching(s_base.embeddings, t_base.embeddings)
    same_layers = (s_config.intermediate_size == t_config.intermediate_size
                   and s_config.num_attention_heads == t_config.num_attention_heads)
    if same_layers:
        chosen = mapped_layers(t_config.num_hidden_layers, s_config.num_hidden_layers, mapping)
        for i, j in enumerate(chosen):
            s_base.encoder.layer[i].load_state_dict(t_base.encoder.layer[j].state_dict())
            report["layers"][i] = j
    else:
        report["reason"] = "layer widths differ from the teacher's: encoder layers left random"
    if getattr(s_base, "pooler", None) is not None and getattr(t_base, "pooler", None) is not None:
        report["head"] += [f"pooler.{n}" for n in _copy_matching(s_base.pooler, t_base.pooler)]
    if hasattr(student, "classifier") and hasattr(teacher, "classifier"):
        report["head"] += [f"classifier.{n}" for n in _copy_matching(student.classifier, teacher.classifier)]
    return report


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())
