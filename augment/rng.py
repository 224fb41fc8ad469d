"""Per-example randomness: every random choice comes from (seed, example id, operator chain, k).

A variant's generator is a keyed stream: blake2b of the key in counter mode, 64-bit words turned into
draws. Seeding a `random.Random` (a Mersenne Twister of 624 words) costs about 4-12 µs, longer than a
whole character-level augmentation; a blake2b digest costs under 1 µs and serves eight draws. The
stream depends only on the key: not on the process, the platform, `PYTHONHASHSEED` or the global
`random` state, which it never touches.

`KeyedRandom` offers the part of the `random.Random` interface the operators use (`random`,
`randrange`, `randint`, `choice`, `choices`, `sample`), `pick` for a draw by cumulative weights, and
the two draws the per-output path of the character and word operators rests on: `picks` (distinct
slots, each with a weighted candidate, one draw per change) and `pairs` (swap pairs, one draw each).
An integer below n is taken from the top 53 bits of a word as floor(x * n / 2^53): the bias is below
n / 2^53, far under anything a sentence's few dozen slots could show.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from struct import Struct

_WORDS = Struct("<8Q")
_SCALE = 2.0 ** -53


def _key(seed: int, example_id: str, chain: Sequence[str], k: int | str) -> bytes:
    return "\x1f".join((str(seed), example_id, "\x1e".join(chain), str(k))).encode("utf-8")


class KeyedRandom:
    """A deterministic stream of draws keyed by bytes (see the module docstring)."""

    __slots__ = ("_key", "_block", "_pool")

    def __init__(self, key: bytes, first: bytes | None = None) -> None:
        """`first`: the key's block 0 (its unsalted digest) when the caller has it already."""
        self._key = key
        self._block = 0
        self._pool = list(_WORDS.unpack(first or hashlib.blake2b(key, digest_size=64).digest()))

    def _refill(self) -> list[int]:
        """Eight more 64-bit words: block n >= 1 is the digest salted with n (block 0, the first, has the
        zero salt)."""
        self._block += 1
        self._pool += _WORDS.unpack(hashlib.blake2b(self._key, digest_size=64,
                                                    salt=self._block.to_bytes(8, "little")).digest())
        return self._pool

    def _word(self) -> int:
        """The next 64-bit word of the stream, once the pool is empty."""
        return self._refill().pop()

    # The draws below take the pool's next word inline (a method call per draw is a third of its cost).

    def random(self) -> float:
        """A float in [0, 1)."""
        pool = self._pool
        return ((pool.pop() if pool else self._word()) >> 11) * _SCALE

    def randrange(self, n: int) -> int:
        """An integer in [0, n), n >= 1."""
        if n <= 0:
            raise ValueError(f"empty range for randrange({n})")
        pool = self._pool
        return (((pool.pop() if pool else self._word()) >> 11) * n) >> 53

    def pick(self, items: Sequence, cum_weights: Sequence[float]):
        """One item drawn with the given cumulative weights (`choices(items, cum_weights=...)[0]`,
        without building a list)."""
        pool = self._pool
        x = ((pool.pop() if pool else self._word()) >> 11) * _SCALE * cum_weights[-1]
        i = bisect_right(cum_weights, x)
        return items[i if i < len(items) else -1]   # x rounds up to the total only in the last bit

    def picks(self, tables: Sequence[tuple[object, Sequence, Sequence[float], float]], count: int) -> list[tuple]:
        """`count` (payload, item) from distinct tables `(payload, items, bounds, total)` (bounds: the
        items' cumulative weights without the last, which is the total), in draw order, one uniform draw
        each: its integer part (times the number of tables) picks the table, the rest an item by weight.
        A draw whose table is taken already is drawn again, which leaves every untaken table equally
        likely (as `sample` of the tables would). `count` <= len(tables).

        (x = u·n with u < 1 stays below n in floating point, so the table index is in range; without the
        total among the bounds, an item index is too, however the product with it rounds.)"""
        scale = _SCALE * len(tables)
        pool = self._pool
        if count == 1:
            x = ((pool.pop() if pool else self._word()) >> 11) * scale
            s = int(x)
            payload, items, bounds, total = tables[s]
            return [(payload, items[bisect_right(bounds, (x - s) * total)])]
        chosen: dict[int, tuple] = {}
        while count:
            x = ((pool.pop() if pool else self._word()) >> 11) * scale
            s = int(x)
            if s not in chosen:
                payload, items, bounds, total = tables[s]
                chosen[s] = (payload, items[bisect_right(bounds, (x - s) * total)])
                count -= 1
        return list(chosen.values())

    def pairs(self, n: int, count: int) -> list[tuple[int, int]]:
        """`count` ordered pairs (a, b) of distinct integers below n (n >= 2), each uniform over the
        n·(n-1) such pairs and drawn from one 64-bit word: floor(w·n·(n-1) / 2^64) numbers the pair
        (bias below n² / 2^64)."""
        span, last = n * (n - 1), n - 1
        pool = self._pool
        out = []
        for _ in range(count):
            a, b = divmod(((pool.pop() if pool else self._word()) * span) >> 64, last)
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
        if k == 1:
            pool = self._pool
            return [population[(((pool.pop() if pool else self._word()) >> 11) * n) >> 53]]
        if 4 * k <= n:
            pool = self._pool
            while True:
                while len(pool) < k:
                    self._refill()
                picked = [((pool.pop() >> 11) * n) >> 53 for _ in range(k)]
                if len(set(picked)) == k:
                    return [population[i] for i in picked]
        pool = list(population)
        for i in range(k):
            j = i + self.randrange(n - i)
            pool[i], pool[j] = pool[j], pool[i]
        return pool[:k]


def derive_rng(seed: int, example_id: str, chain: Sequence[str], k: int) -> KeyedRandom:
    """The generator of attempt k of an operator chain on an example."""
    return KeyedRandom(_key(seed, example_id, chain, k))


class KeyedSeries:
    """The generators of attempts k = 0, 1, ... of one operator chain on one example (`derive_rng`'s, draw
    for draw). The part of the key they share is hashed once: each attempt copies that hash state and adds
    its k, which costs a third of hashing the whole key anew."""

    __slots__ = ("_prefix", "_state")

    def __init__(self, seed: int, example_id: str, chain: Sequence[str]) -> None:
        self._prefix = _key(seed, example_id, chain, "")
        self._state = hashlib.blake2b(self._prefix, digest_size=64)

    def __call__(self, k: int) -> KeyedRandom:
        tail = b"%d" % k
        state = self._state.copy()
        state.update(tail)
        rng = _new(KeyedRandom)   # what KeyedRandom(key, first) makes, without its call (one per attempt)
        rng._key = self._prefix + tail
        rng._block = 0
        rng._pool = list(_WORDS.unpack(state.digest()))
        return rng


_new = object.__new__
