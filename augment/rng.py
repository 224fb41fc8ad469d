"""Per-example randomness: every random choice comes from (seed, example id, operator chain, k).

Attempt k of a chain on an example has its own stream of 64-bit words: SplitMix64 (Steele, Lea and
Flood 2014) counted from a 64-bit seed, the blake2b digest of (seed, example id, chain), word j of
attempt k being output number k·2^32 + j + 1 of that seed's sequence. The seed is hashed once per example
and chain; every word after it is a few integer operations, in Python for one attempt (`KeyedRandom`)
or in numpy for many attempts of many examples at once (`stream_words`, the same words: the batched
paths of `augment/batch.py` draw exactly what the per-attempt paths draw). A stream depends only on its
key and k: not on the process, the platform, `PYTHONHASHSEED`, the batch it is drawn in, or the global
`random` state, which it never touches.

`KeyedRandom` offers the part of the `random.Random` interface the operators use (`random`,
`randrange`, `randint`, `choice`, `choices`, `sample`), `pick` for a draw by cumulative weights, and
the two draws the per-output path of the character and word operators rests on: `picks` (distinct
slots, each with a weighted candidate, one word per change) and `pairs` (swap pairs, one word each).
An integer below n is taken from the top 53 bits of a word as floor(x * n / 2^53): the bias is below
n / 2^53, far under anything a sentence's few dozen slots could show. `picks` splits its word in two
32-bit halves (slot, candidate), so that numpy can make the same draw in 64-bit integers.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zhkd.augment.tables import Table

_SCALE = 2.0 ** -53
_MASK = (1 << 64) - 1
_LOW = (1 << 32) - 1
GAMMA = 0x9E3779B97F4A7C15   # SplitMix64's increment and its two multipliers
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB


def _key(seed: int, example_id: str, chain: Sequence[str]) -> bytes:
    return "\x1f".join((str(seed), example_id, "\x1e".join(chain))).encode("utf-8")


def seed_of(key: bytes) -> int:
    """The 64-bit seed of a key's streams."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


class KeyedRandom:
    """The stream of attempt k of a key (see the module docstring)."""

    __slots__ = ("_state",)

    def __init__(self, key: bytes, k: int = 0) -> None:
        self._state = (seed_of(key) + (k << 32) * GAMMA) & _MASK

    @classmethod
    def of_seed(cls, seed: int, k: int) -> KeyedRandom:
        rng = _new(cls)
        rng._state = (seed + (k << 32) * GAMMA) & _MASK
        return rng

    def _word(self) -> int:
        """The next 64-bit word (SplitMix64)."""
        z = self._state = (self._state + GAMMA) & _MASK
        z = ((z ^ (z >> 30)) * MIX1) & _MASK
        z = ((z ^ (z >> 27)) * MIX2) & _MASK
        return z ^ (z >> 31)

    def random(self) -> float:
        """A float in [0, 1)."""
        return (self._word() >> 11) * _SCALE

    def randrange(self, n: int) -> int:
        """An integer in [0, n), n >= 1."""
        if n <= 0:
            raise ValueError(f"empty range for randrange({n})")
        return ((self._word() >> 11) * n) >> 53

    def pick(self, items: Sequence, cum_weights: Sequence[float]):
        """One item drawn with the given cumulative weights (`choices(items, cum_weights=...)[0]`,
        without building a list)."""
        x = (self._word() >> 11) * _SCALE * cum_weights[-1]
        i = bisect_right(cum_weights, x)
        return items[i if i < len(items) else -1]   # x rounds up to the total only in the last bit

    def picks(self, slots: Sequence[tuple[object, Table]], count: int) -> list[tuple]:
        """`count` (payload, item) from distinct slots `(payload, table)`, in draw order, one word each:
        its high 32 bits pick the slot (floor(h·n / 2^32)), its low 32 bits the table's item by weight
        (the first whose scaled cumulative weight exceeds them, `tables.Table`). A draw whose slot is
        taken already is drawn again, which leaves every untaken slot equally likely (as `sample` of the
        slots would). `count` <= len(slots)."""
        n = len(slots)
        if count == 1:
            w = self._word()
            payload, table = slots[((w >> 32) * n) >> 32]
            return [(payload, table.items[bisect_right(table.bounds, w & _LOW)])]
        chosen: dict[int, tuple] = {}
        while count:
            w = self._word()
            s = ((w >> 32) * n) >> 32
            if s not in chosen:
                payload, table = slots[s]
                chosen[s] = (payload, table.items[bisect_right(table.bounds, w & _LOW)])
                count -= 1
        return list(chosen.values())

    def pairs(self, n: int, count: int) -> list[tuple[int, int]]:
        """`count` ordered pairs (a, b) of distinct integers below n (n >= 2), each uniform over the
        n·(n-1) such pairs and drawn from one 64-bit word: floor(w·n·(n-1) / 2^64) numbers the pair
        (bias below n² / 2^64)."""
        span, last = n * (n - 1), n - 1
        out = []
        for _ in range(count):
            a, b = divmod((self._word() * span) >> 64, last)
            out.append((a, b + 1 if b >= a else b))
        return out

    def randint(self, a: int, b: int) -> int:
        """An integer in [a, b]."""
        return a + self.randrange(b - a + 1)

    def choice(self, seq: Sequence):
        return seq[self.randrange(len(seq))]

    def choices(self, population: Sequence, weights: Sequence[float] | None = None, *, k: int = 1) -> list:
        """k items drawn with replacement, by weight when given."""
        if weights is None:
            return [population[self.randrange(len(population))] for _ in range(k)]
        cum = list(accumulate(weights))
        last = len(population) - 1
        return [population[min(bisect_right(cum, self.random() * cum[-1]), last)] for _ in range(k)]

    def sample(self, population: Sequence, k: int) -> list:
        """k distinct items in draw order. A small k (the common case: a few slots of a sentence) draws k
        indices at once and draws again in the rare case two coincide, which is uniform over ordered
        k-tuples of distinct indices; a large k takes a partial shuffle."""
        n = len(population)
        if not 0 <= k <= n:
            raise ValueError(f"sample of {k} from a population of {n}")
        if 4 * k <= n:
            while True:
                picked = [((self._word() >> 11) * n) >> 53 for _ in range(k)]
                if len(set(picked)) == k:
                    return [population[i] for i in picked]
        pool = list(population)
        for i in range(k):
            j = i + self.randrange(n - i)
            pool[i], pool[j] = pool[j], pool[i]
        return pool[:k]


def derive_rng(seed: int, example_id: str, chain: Sequence[str], k: int) -> KeyedRandom:
    """The generator of attempt k of an operator chain on an example."""
    return KeyedRandom(_key(seed, example_id, chain), k)


class KeyedSeries:
    """The generators of attempts k = 0, 1, ... of one operator chain on one example (`derive_rng`'s, draw
    for draw), the key hashed once: `seed` is what `stream_words` takes for them."""

    __slots__ = ("seed",)

    def __init__(self, seed: int, example_id: str, chain: Sequence[str]) -> None:
        self.seed = seed_of(_key(seed, example_id, chain))

    def __call__(self, k: int) -> KeyedRandom:
        return KeyedRandom.of_seed(self.seed, k)


_new = object.__new__
