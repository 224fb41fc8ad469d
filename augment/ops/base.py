"""The operator protocol and helpers every operator shares.

An operator is a small object holding configuration only (cheap to pickle); `apply` turns one
`Segmented` into another, drawing every random choice from the rng it is given, and returns None
when it cannot change the sentence (nothing eligible, or a rate of 0). Heavy state (lexicon indexes,
converters, models) lives in per-process caches outside the operator.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import NamedTuple, Protocol

from zhkd.augment.charset import is_cjk
from zhkd.augment.lexicon import is_content_word, synonym_sets
from zhkd.augment.rng import KeyedRandom
from zhkd.augment.segment import Segmented


class Operator(Protocol):
    name: str          # recorded in Variant.ops, e.g. "synonym" or "convert:s2tw"
    span_safe: bool    # keeps every entity word (edits only outside entities, moves entities whole)

    def apply(self, seg: Segmented, rng: KeyedRandom) -> Segmented | None: ...


def count_for(p: float, eligible: int) -> int:
    """How many of the eligible units a rate p changes: at least one when p > 0 and any is eligible."""
    if p <= 0 or eligible == 0:
        return 0
    n = round(p * eligible)
    return 1 if n < 1 else eligible if n > eligible else n


def is_wordlike(word: str) -> bool:
    """A word with a CJK character, letter or digit (not punctuation or whitespace)."""
    return any(is_cjk(c) or c.isalnum() for c in word)


def free_words(seg: Segmented) -> list[int]:
    """Indices of the word-like words outside entities."""
    return seg.remember("free", _free_words)


def _free_words(seg: Segmented) -> list[int]:
    return [i for i, (w, e) in enumerate(zip(seg.words, seg.ents, strict=True)) if e is None and is_wordlike(w)]


def _content_words(seg: Segmented) -> list[int]:
    return [i for i, (w, tag, ent) in enumerate(zip(seg.words, seg.pos, seg.ents, strict=True))
            if ent is None and is_content_word(w, tag)]


def content_words(seg: Segmented) -> list[int]:
    """Indices of the words lexical operators may rewrite (see lexicon.is_content_word)."""
    return seg.remember("content", _content_words)


def synonym_slots(seg: Segmented) -> list[tuple[int, tuple]]:
    """(word index, its synonym sets) for the content words that have synonyms."""
    return seg.remember("synonyms", lambda s: [(i, sets) for i in content_words(s)
                                               if (sets := synonym_sets(s.words[i], s.pos[i]))])


def check_rate(name: str, p: float) -> float:
    from zhkd.augment.errors import AugmentError

    if not 0.0 <= p <= 1.0:
        raise AugmentError(f"{name}: rate p must lie in [0, 1], got {p}")
    return p



class Slots(NamedTuple):
    """A sentence's replaceable units, made once per sentence: `slots[s]` is (what the operator needs to
    make the change, the unit's candidate sets as (candidates, cumulative weights)), and `count` how many
    distinct slots a variant changes."""

    slots: list[tuple[tuple, tuple[tuple[tuple, tuple[float, ...]], ...]]]
    count: int

    def capacity(self) -> int:
        return sum(len(cands) for _, sets in self.slots for cands, _ in sets)


def draw_slots(plan: Slots, rng: KeyedRandom) -> list[tuple[tuple, object]]:
    """`plan.count` (payload, candidate) of distinct slots, in draw order, one uniform draw each: its
    integer part (times the slot count) picks the slot, the rest an equal share of the slot's sets and a
    candidate by weight. A draw whose slot is taken already is drawn again, which leaves every untaken
    slot equally likely (as `rng.sample` of the slots would)."""
    slots, count = plan
    n = len(slots)
    chosen: dict[int, tuple[tuple, object]] = {}
    while len(chosen) < count:
        x = rng.random() * n
        s = int(x)
        if s in chosen or s >= n:
            continue
        payload, sets = slots[s]
        x -= s
        if len(sets) > 1:
            x *= len(sets)
            m = int(x)
            x -= m
            cands, cum = sets[m]
        else:
            cands, cum = sets[0]
        i = bisect_right(cum, x * cum[-1])
        chosen[s] = (payload, cands[i if i < len(cands) else -1])
    return list(chosen.values())
