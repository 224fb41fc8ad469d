"""Operators by name. A spec is `name` or `name:variant` ("convert:s2tw", "eda:delete"); a bare family
name ("convert", "eda") stands for all its default variants."""

from __future__ import annotations

import importlib

from zhkd.augment.errors import AugmentError

# name -> (module:class, variants a bare name expands to, the variant-taking keyword)
REGISTRY: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "synonym": ("zhkd.augment.ops.synonym:Synonym", (), None),
    "mlm": ("zhkd.augment.ops.mlm:Mlm", (), None),
    "wordvec": ("zhkd.augment.ops.wordvec:Wordvec", (), None),
    "ngram": ("zhkd.augment.ops.ngram:Ngram", (), None),
    "convert": ("zhkd.augment.ops.convert:Convert", ("s2t", "s2tw", "s2twp", "s2hk"), "config"),
    "homophone": ("zhkd.augment.ops.homophone:Homophone", (), None),
    "mask": ("zhkd.augment.ops.mask:Mask", (), None),
    "eda": ("zhkd.augment.ops.eda:Eda", ("swap", "delete", "insert"), "mode"),
}


def expand(spec: str) -> list[str]:
    """Concrete specs named by `spec` ("eda" -> eda:swap, eda:delete, eda:insert); AugmentError if unknown."""
    name, _, variant = spec.strip().partition(":")
    if name not in REGISTRY:
        raise AugmentError(f"unknown operator {spec!r}; known: {', '.join(REGISTRY)}")
    _, family, keyword = REGISTRY[name]
    if variant and keyword is None:
        raise AugmentError(f"operator {name!r} takes no variant (got {spec!r})")
    if variant or not family:
        return [spec.strip()]
    return [f"{name}:{v}" for v in family]


def operator_class(spec: str) -> type:
    module, _, cls = REGISTRY[spec.partition(":")[0]][0].partition(":")
    return getattr(importlib.import_module(module), cls)


def build(spec: str, **options):
    """An operator instance for a concrete spec; options are the class's keyword arguments."""
    name, _, variant = spec.partition(":")
    keyword = REGISTRY[name][2]
    if variant:
        options = {**options, keyword: variant}
    return operator_class(spec)(**options)
