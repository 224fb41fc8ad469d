"""Per-process memo tables that CPython's garbage collector keeps where they are.

The collector stops tracking a plain dict whose keys and values are all atomic (strings, numbers,
tuples of them) when a collection meets it, and tracks it again, in the youngest generation, as soon
as a new tuple key goes in. The young collections that follow then walk the whole table: tens of
thousands of entries for the word caches, where a young collection should cost the few hundred objects
made since the last. functools' caches are such dicts, and the caches the per-sentence plans read fill
with new words all the time, so every full collection (whoever triggers it) made the next ones walk
them again. It untracks exact dicts only: `Table`, a dict subclass, stays tracked, and so stays in the
oldest generation once it gets there.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TypeVar

F = TypeVar("F", bound=Callable)
_MISSING = object()


class Table(dict):
    """A dict the collector never untracks (see the module docstring)."""

    __slots__ = ()


def memo(function: F) -> F:
    """`functools.cache` on a `Table`: the result per positional arguments, computed once per process.
    The table is `.table`, for a caller that reads it directly on a hot path."""
    table = Table()
    get = table.get

    @wraps(function)
    def cached(*args):
        value = get(args, _MISSING)
        if value is _MISSING:
            value = table[args] = function(*args)
        return value

    cached.table = table
    return cached  # type: ignore[return-value]
