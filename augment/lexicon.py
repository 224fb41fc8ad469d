"""Lexicons bundled with augment: the Cilin `=` synonym groups (see data_cards/cilin.md)."""

from __future__ import annotations

import gzip
import heapq
from functools import cache
from pathlib import Path

from zhkd.augment.charset import is_plain_word

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


def is_content_word(word: str, tag: str) -> bool:
    """A word lexical operators may rewrite: a plain, common CJK content word that is not a name."""
    return (tag not in ENTITY_TAGS and tag[:1] in CONTENT_CLASSES and word not in stop_words()
            and is_plain_word(word))


@cache
def char_freq() -> dict[str, int]:
    """Frequency of each character: the summed frequencies of the dictionary words that contain it."""
    counts: dict[str, int] = {}
    for word, n in dictionary_freq().items():
        if n:
            for c in word:
                counts[c] = counts.get(c, 0) + n
    return counts


@cache
def _cilin_index() -> dict[str, tuple[int, ...]]:
    index: dict[str, list[int]] = {}
    for g, words in enumerate(cilin_groups()):
        for word in words:
            index.setdefault(word, []).append(g)
    return {word: tuple(groups) for word, groups in index.items()}


SYNONYM_MIN_FREQ = 50


@cache
def synonym_sets(word: str, tag: str) -> tuple[tuple[tuple[str, ...], tuple[float, ...]], ...]:
    """Per Cilin `=` group holding the word: its usable synonyms and their cumulative weights.

    Only words of two or more characters have synonyms here: single characters are too ambiguous
    (离 "leave" sits with 脱 "take off"). Usable: a plain common word of two or more characters (no
    negator, GB2312 level 1), at least SYNONYM_MIN_FREQ in jieba's dictionary, and the same POS class
    as the word when both are known. Weights grow with the square root of frequency.
    """
    if len(word) < 2:
        return ()
    freq = dictionary_freq()
    groups = cilin_groups()
    out = []
    for g in _cilin_index().get(word, ()):
        chosen = []
        for cand in groups[g]:
            if cand == word or not is_plain_word(cand) or freq.get(cand, 0) < SYNONYM_MIN_FREQ:
                continue
            if len(cand) < 2:
                continue
            cand_tag = dictionary_tag(cand)
            if cand_tag and tag and cand_tag[:1] != tag[:1]:
                continue
            chosen.append(cand)
        if chosen:
            out.append((tuple(chosen), _cumulative([freq[c] ** 0.5 for c in chosen])))
    return tuple(out)


def _cumulative(weights: list[float]) -> tuple[float, ...]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return tuple(out)
