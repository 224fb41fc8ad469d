"""The values augment passes around: an input example and one of its variants."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    """One input row. For NER, `text` is `"".join(tokens)` and `tags` are BIO strings such as "B-PER";
    a multilabel row's `label` is the tuple of its labels (empty when none applies)."""

    id: str
    text: str
    text_pair: str | None = None
    label: str | int | tuple | None = None
    tokens: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Variant:
    """The original (ops == (), id == source id) or an augmented copy with the operator chain that made it."""

    id: str
    source_id: str
    text: str
    text_pair: str | None
    label: str | int | tuple | None
    tokens: tuple[str, ...] | None
    tags: tuple[str, ...] | None
    ops: tuple[str, ...]
    is_original: bool

    @classmethod
    def original(cls, example: Example) -> Variant:
        return cls(example.id, example.id, example.text, example.text_pair, example.label,
                   example.tokens, example.tags, (), True)
