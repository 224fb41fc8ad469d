"""The operator protocol and helpers every operator shares.

An operator is a small object holding configuration only (cheap to pickle); `apply` turns one
`Segmented` into another, drawing every random choice from the rng it is given, and returns None
when it cannot change the sentence (nothing eligible, or a rate of 0). Heavy state (lexicon indexes,
converters, models) lives in per-process caches outside the operator.

An operator may also offer `text_maker(seg)`: a function of the rng giving `apply(seg, rng).text`
from the same draws (None where `apply` gives None) without building a `Segmented`, made once per
sentence so the per-output path is the draws and a splice; or None when `apply` can never change
this sentence, which spares the policy every attempt at it.
"""

from __future__ import annotations

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
    """A sentence's replaceable units, made once per sentence: `slots[s]` is (payload: what the operator
    needs to make the change, starting with the unit's (start, end) in the text; its candidates; their
    cumulative weights without the last; that last, the total), and `count` how many distinct slots a
    variant changes (`KeyedRandom.picks`)."""

    slots: list[tuple[tuple, tuple, tuple[float, ...], float]]
    count: int

    def capacity(self) -> int:
        return sum(len(cands) for _, cands, _, _ in self.slots)


def splice(text: str, picked: list[tuple[tuple, str]]) -> str:
    """The text with each picked slot's span (its payload's first two numbers) replaced by its candidate;
    the spans are distinct slots' and do not overlap."""
    if len(picked) == 1:
        (span, new), = picked
        return text[:span[0]] + new + text[span[1]:]
    pieces, at = [], 0
    for span, new in sorted(picked):
        pieces += (text[at:span[0]], new)
        at = span[1]
    pieces.append(text[at:])
    return "".join(pieces)
