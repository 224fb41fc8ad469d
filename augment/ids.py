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
