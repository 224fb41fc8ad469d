"""Lexicons bundled with augment: the Cilin `=` synonym groups (see data_cards/cilin.md)."""

from __future__ import annotations

import gzip
from functools import cache
from pathlib import Path

CILIN_PATH = Path(__file__).parent / "data" / "cilin.txt.gz"


@cache
def cilin_groups() -> tuple[tuple[str, ...], ...]:
    """Each `=` group's words, in the lexicon's order (the group code is dropped)."""
    with gzip.open(CILIN_PATH, "rt", encoding="utf-8") as f:
        return tuple(tuple(line.split()[1:]) for line in f if line.strip())
