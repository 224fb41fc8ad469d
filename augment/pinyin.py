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
    """Each character's reading in this word, as pypinyin's `lazy_pinyin(word)` reads it (its phrase
    segmentation, its phrase dictionary, else each character's first reading) but without its per-call
    machinery: about 15 µs instead of about 90 per new word, which a character-level operator feels.
    A word with a character outside pypinyin's tables goes through `lazy_pinyin` itself. A test checks
    the two agree on the bundled corpus's words."""
    from pypinyin.constants import PHRASES_DICT, PINYIN_DICT, RE_HANS
    from pypinyin.seg.mmseg import seg

    if not RE_HANS.fullmatch(word) or any(ord(c) not in PINYIN_DICT for c in word):
        return _lazy_readings(word, toned)
    marked: list[str] = []
    for phrase in seg.cut(word):
        if phrase in PHRASES_DICT:
            marked += [choices[0] for choices in PHRASES_DICT[phrase]]
        else:
            marked += [PINYIN_DICT[ord(c)].split(",")[0] for c in phrase]
    if len(marked) != len(word):
        return _lazy_readings(word, toned)
    return tuple(_syllable(c, m, toned) for c, m in zip(word, marked, strict=True))


@cache
def _syllable(char: str, marked: str, toned: bool) -> str:
    """A tone-marked syllable in the reading style, by pypinyin's own converter (lazy_pinyin's defaults)."""
    return _converter().convert_style(char, marked, _style(toned), strict=True)


@cache
def _converter():
    from pypinyin.converter import UltimateConverter

    return UltimateConverter()


def _lazy_readings(word: str, toned: bool) -> tuple[str, ...]:
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
