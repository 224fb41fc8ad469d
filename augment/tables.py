"""Candidate tables: the items an operator may put into a slot, with their weights, in the form both draw
paths take.

A table's cumulative weights are scaled to 2^32 (`bounds`, without the last, which is 2^32), so a draw is
integer arithmetic: the first item whose bound exceeds 32 random bits (`KeyedRandom.picks` in Python,
`draw_items` in numpy, the same item). Tables are made once per process by the cached functions that
build candidates (pinyin's homophone tables at load, synonym's merged sets per word), and each is
numbered in this process's registry, whose flat arrays let the batched path look up thousands of draws
in a few calls (`draw_items`). The numbers depend on the order a process made its tables in and never
reach an output.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from typing import NamedTuple

import numpy as np

SCALE = 1 << 32


class Table(NamedTuple):
    id: int                    # the registry's number for it (-1: an empty table, never drawn from)
    items: tuple[str, ...]
    bounds: tuple[int, ...]    # cumulative weights scaled to 2^32, all but the last; each below 2^32


EMPTY = Table(-1, (), ())


def make_table(items: Sequence[str], cum_weights: Sequence[float]) -> Table:
    """The table of `items` with these cumulative weights, registered (EMPTY when there are no items).
    Call it from a cached function: every call registers a new table."""
    if not items:
        return EMPTY
    total = cum_weights[-1]
    bounds = tuple(min(SCALE - 1, int(c / total * SCALE)) for c in cum_weights[:-1])
    return Table(_REGISTRY.add(tuple(items), bounds), tuple(items), bounds)


class _Registry:
    """Every non-empty table of the process, numbered 0, 1, ... in the order made, in flat arrays.

    A table of n items has n entries in `bounds`: its n - 1 bounds and 2^32 (above every draw), from
    `bound_start`; and a guide of 2^b entries (2^b >= n) from `guide_start`: entry g is the item
    `bisect_right(bounds, g << (32 - b))` picks, where a walk up the bounds starts for 32 bits whose top
    b bits are g (Chen and Asau's guide table: a step or two, and exactly `bisect_right`'s item). Items
    are numbered globally (`item_start` of a table plus the index in it); their characters lie end to
    end in `codes` (UTF-32 code points). A table is added to Python lists (a few microseconds: a word's
    first sentence makes its table), and the arrays take what was added when next read (`arrays`)."""

    FIELDS = ("bounds", "bound_start", "guide", "guide_start", "shift", "item_start", "codes", "code_start",
              "code_len")

    def __init__(self) -> None:
        self.lock = threading.Lock()   # a runner may augment in several threads of one process
        self.sizes = dict.fromkeys(self.FIELDS, 0)   # of each field, pending entries included
        self.pending: dict[str, list] = {name: [] for name in self.FIELDS}
        self.flat: dict[str, np.ndarray] = {name: np.empty(0, np.uint32 if name == "codes" else np.int64)
                                            for name in self.FIELDS}

    def add(self, items: tuple[str, ...], bounds: tuple[int, ...]) -> int:
        bits = (len(items) - 1).bit_length()
        shift = 32 - bits
        codes = "".join(items).encode("utf-32-le", "surrogatepass")
        lengths = [len(item) for item in items]
        guide = [bisect_right(bounds, g << shift) for g in range(1 << bits)]
        with self.lock:
            sizes, pending = self.sizes, self.pending
            number = sizes["item_start"]
            values = {"bounds": [*bounds, SCALE], "bound_start": [sizes["bounds"]], "guide": guide,
                      "guide_start": [sizes["guide"]], "shift": [shift], "item_start": [sizes["code_start"]],
                      "codes": [codes], "code_start": list(accumulate(lengths, initial=sizes["codes"]))[:-1],
                      "code_len": lengths}
            for name, new in values.items():
                pending[name] += new
                sizes[name] += len(codes) // 4 if name == "codes" else len(new)
        return number

    def arrays(self) -> dict[str, np.ndarray]:
        """The flat arrays, with every table added so far."""
        with self.lock:
            for name, new in self.pending.items():
                if new:
                    added = np.frombuffer(b"".join(new), np.uint32) if name == "codes" else np.array(new, np.int64)
                    self.flat[name] = _grown(self.flat[name], added, self.sizes[name])
                    new.clear()
            return {name: array[: self.sizes[name]] for name, array in self.flat.items()}


def _grown(array: np.ndarray, added: np.ndarray, size: int) -> np.ndarray:
    """`array`'s first size - len(added) entries followed by `added`, in place where the array has room
    (it grows by doubling, so adding a table costs its own size, not the registry's)."""
    end, start = size, size - len(added)
    if end > len(array):
        bigger = np.empty(max(end, 2 * len(array), 4096), array.dtype)
        bigger[:start] = array[:start]
        array = bigger
    array[start:end] = added
    return array


_REGISTRY = _Registry()


def draw_items(tables: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """The global item number each draw picks (`bisect_right(table.bounds, bits)` of its table):
    `tables` their table numbers, `bits` their 32 random bits (int64 arrays of one length)."""
    flat = _REGISTRY.arrays()
    index = flat["guide"][flat["guide_start"][tables] + (bits >> flat["shift"][tables])]
    first, bounds = flat["bound_start"][tables], flat["bounds"]
    walking = np.flatnonzero(bounds[first + index] <= bits)
    while walking.size:
        index[walking] += 1
        walking = walking[bounds[first[walking] + index[walking]] <= bits[walking]]
    return flat["item_start"][tables] + index


def item_codes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, each item's first code, each item's length): where a global item's characters lie."""
    flat = _REGISTRY.arrays()
    return flat["codes"], flat["code_start"], flat["code_len"]
