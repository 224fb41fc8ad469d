"""Stable identifiers: the same content gives the same id on every machine and under any PYTHONHASHSEED."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

_SEPARATOR = "\x1f"
CONTENT_FIELDS = ("text", "text_pair", "tokens", "tags", "label", "labels")  # absent fields leave ids as they were


def stable_id(*parts: str) -> str:
    """A 16-hex-digit blake2b digest of the parts (the separator keeps ("ab", "c") apart from ("a", "bc"))."""
    return hashlib.blake2b(_SEPARATOR.join(parts).encode("utf-8"), digest_size=8).hexdigest()


def content_id(row: dict) -> str:
    """The id of an input row that brings none: a digest of its content fields only."""
    content = {key: row[key] for key in CONTENT_FIELDS if row.get(key) is not None}
    return "row-" + stable_id(json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":")))


def variant_id(source_id: str, ops: Sequence[str], k: int) -> str:
    """Prefixed by the source id, so a source and its variants sort next to each other."""
    return f"{source_id}~{stable_id(source_id, *ops, str(k))}"


class VariantIds:
    """`variant_id` for the variants of one source, the part of the digest they share hashed once per
    operator chain (one id is made per output)."""

    __slots__ = ("_source_id", "_states")

    def __init__(self, source_id: str) -> None:
        self._source_id = source_id
        self._states: dict[tuple[str, ...], object] = {}

    def __call__(self, ops: tuple[str, ...], k: int) -> str:
        state = self._states.get(ops)
        if state is None:
            shared = _SEPARATOR.join((self._source_id, *ops, "")).encode("utf-8")
            state = self._states[ops] = hashlib.blake2b(shared, digest_size=8)
        state = state.copy()
        state.update(b"%d" % k)
        return f"{self._source_id}~{state.hexdigest()}"
