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
    """Prefixed by the source id, so a source and its variants sort next to each other; the rest is the
    k-th 8 bytes of SHAKE-256 of (source id, ops), so the ids of all of a source's attempts come from one
    hash (`VariantIds`)."""
    return f"{source_id}~{variant_hexes(source_id, ops, k + 1)[16 * k:]}"


def variant_hexes(source_id: str, ops: Sequence[str], count: int) -> str:
    """The id suffixes of attempts 0 .. count - 1 end to end, 16 hex digits each."""
    return hashlib.shake_256(_SEPARATOR.join((source_id, *ops, "")).encode("utf-8")).hexdigest(8 * count)


class VariantIds:
    """`variant_id` for the variants of one source: the hash of each operator chain is made once, long
    enough for 32 attempts (doubled when an attempt goes past it), and an id is a slice of it."""

    __slots__ = ("_source_id", "_hex")

    def __init__(self, source_id: str) -> None:
        self._source_id = source_id
        self._hex: dict[tuple[str, ...], str] = {}

    def __call__(self, ops: tuple[str, ...], k: int) -> str:
        hexes = self._hex.get(ops)
        at = 16 * k
        if hexes is None or len(hexes) < at + 16:
            hexes = self._hex[ops] = variant_hexes(self._source_id, ops, max(32, 2 * (k + 1)))
        return f"{self._source_id}~{hexes[at:at + 16]}"
