"""The operator protocol and helpers every operator shares.

An operator is a small object holding configuration only (cheap to pickle); `apply` turns one
`Segmented` into another, drawing every random choice from the rng it is given, and returns None
when it cannot change the sentence (nothing eligible, or a rate of 0). Heavy state (lexicon indexes,
converters, models) lives in per-process caches outside the operator.

An operator may also offer `text_maker(seg)`: a function of the rng giving `apply(seg, rng).text`
from the same draws (None where `apply` gives None) without building a `Segmented`, made once per
sentence so the per-output path is the draws and a splice; or None when `apply` can never change
this sentence, which spares the policy every attempt at it. And `texts_batch(jobs)`: for jobs
(sentence, stream seed of `KeyedSeries`, attempts), the text maker's texts for every attempt, made for
the whole batch at once in numpy (`augment/batch.py`); a single-operator policy uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import NamedTuple, Protocol

from zhkd.augment.charset import is_cjk
from zhkd.augment.lexicon import is_content_word, synonym_sets
from zhkd.augment.memo import memo
from zhkd.augment.rng import KeyedRandom
from zhkd.augment.segment import Segmented
from zhkd.augment.tables import Table


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


@memo
def is_wordlike(word: str) -> bool:
    """A word with a CJK character, letter or digit (not punctuation or whitespace); remembered per word."""
    return any(is_cjk(c) or c.isalnum() for c in word)


def free_words(seg: Segmented) -> list[int]:
    """Indices of the word-like words outside entities."""
    return seg.remember("free", _free_words)


def _free_words(seg: Segmented) -> list[int]:
    wordlike = list(map(is_wordlike.table.get, zip(seg.words)))   # a look-up per word
    if None in wordlike:   # words this process meets for the first time
        wordlike = [is_wordlike(word) if known is None else known
                    for known, word in zip(wordlike, seg.words, strict=True)]
    if any(seg.ents):
        wordlike = [ok and ent is None for ok, ent in zip(wordlike, seg.ents, strict=True)]
    return [i for i, ok in enumerate(wordlike) if ok]


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
    needs to make the change, starting with the unit's (start, end) in the text; the table of its
    candidates), and `count` how many distinct slots a variant changes (`KeyedRandom.picks`)."""

    slots: list[tuple[tuple, Table]]
    count: int

    def capacity(self) -> int:
        return sum(len(table.items) for _, table in self.slots)


def texts_one_by_one(op, jobs: Sequence[tuple[Segmented, int, range]]) -> list[list[str | None]]:
    """`texts_batch` made attempt by attempt with the operator's text maker."""
    out = []
    for seg, seed, attempts in jobs:
        make = op.text_maker(seg)
        out.append([None] * len(attempts) if make is None else [make(KeyedRandom.of_seed(seed, k)) for k in attempts])
    return out


def texts_in_batch(op, jobs: Sequence[tuple[Segmented, int, range]], plan_of, run) -> list[list[str | None]]:
    """`texts_batch` of an operator with a batched path: for jobs (sentence, stream seed of `KeyedSeries`,
    attempts), what `op.text_maker(sentence)` gives for each attempt's rng, made in one batch:
    `plan_of(sentence)` is the sentence's plan as `run` (a function of `augment/batch.py`) takes it, or
    None when the operator can never change it (its attempts give None)."""
    work, out = [], []
    for seg, seed, attempts in jobs:
        plan = plan_of(seg)
        if plan is None:
            out.append([None] * len(attempts))
            continue
        work.append((plan, seed, attempts, partial(_text_of, op, seg)))
        out.append(None)
    made = iter(run(work) if work else ())
    return [texts if texts is not None else next(made) for texts in out]


def _text_of(op, seg: Segmented, rng: KeyedRandom) -> str | None:
    """An attempt the batch left to the text maker (`batch.by_job`)."""
    return op.text_maker(seg)(rng)


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
