"""The catalogue of model shapes: students, and the BERT-base reference they are measured against."""

from __future__ import annotations

from dataclasses import dataclass

from distill.errors import DistillError


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
                labels: list[str] | None = None, pad_token_id: int = 0, seed: int = 0):
    """A randomly initialised BERT of a catalogue shape ("sequence", "token" or "mlm" head)."""
    import torch
    import transformers

    shape = get_shape(shape) if isinstance(shape, str) else shape
    config = transformers.BertConfig(
        vocab_size=vocab_size, hidden_size=shape.hidden, num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads, intermediate_size=shape.intermediate,
        max_position_embeddings=shape.max_positions, pad_token_id=pad_token_id,
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
