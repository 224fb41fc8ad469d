"""Pinyin readings and the homophone index (common characters grouped by reading, with frequencies)."""

from __future__ import annotations

from functools import cache

from zhkd.augment.charset import NEGATORS, common_chars

HOMOPHONE_MIN_FREQ = 2000   # summed dictionary frequency below which a common character still reads as odd


def _style(toned: bool):
    from pypinyin import Style

    return Style.TONE3 if toned else Style.NORMAL


@cache
def word_readings(word: str, toned: bool) -> tuple[str, ...]:
    """Each character's reading in this word (pypinyin resolves polyphones by phrase)."""
    from pypinyin import lazy_pinyin

    readings = lazy_pinyin(word, style=_style(toned), errors=lambda chars: [""] * len(chars))
    return tuple(readings) if len(readings) == len(word) else ("",) * len(word)


@cache
def char_reading(char: str, toned: bool) -> str:
    """A character's default (most common) reading."""
    return word_readings(char, toned)[0]


@cache
def homophone_index(toned: bool) -> dict[str, tuple[str, ...]]:
    """Reading -> the common, frequent characters with that default reading (never a negator)."""
    from zhkd.augment.lexicon import char_freq

    freq = char_freq()
    index: dict[str, list[str]] = {}
    for char in sorted(common_chars()):
        if char in NEGATORS or freq.get(char, 0) < HOMOPHONE_MIN_FREQ:
            continue
        reading = char_reading(char, toned)
        if reading:
            index.setdefault(reading, []).append(char)
    return {reading: tuple(chars) for reading, chars in index.items()}


@cache
def homophones(char: str, reading: str, toned: bool) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """Other characters read `reading`, with cumulative weights proportional to their frequency."""
    from zhkd.augment.lexicon import char_freq

    freq = char_freq()
    chars = tuple(c for c in homophone_index(toned).get(reading, ()) if c != char)
    total, cum = 0.0, []
    for c in chars:
        total += freq[c]
        cum.append(total)
    return chars, tuple(cum)
