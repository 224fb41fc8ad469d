"""`homophone`: replace characters by common characters with the same pinyin, weighted by frequency.

Only characters of plain content words change: names and unknown words (possible names), stop words,
numbers and words holding a negator are left alone, and no negator is ever introduced.
"""

from __future__ import annotations

from functools import cache
from itertools import accumulate, repeat

from zhkd.augment.batch import Substitution, substitute
from zhkd.augment.lexicon import frequent_words, is_content_word
from zhkd.augment.memo import memo
from zhkd.augment.ops.base import Slots, check_rate, count_for, splice, texts_in_batch
from zhkd.augment.pinyin import char_homophones, default_read, homophones, word_readings
from zhkd.augment.rng import KeyedRandom
from zhkd.augment.segment import Segmented
from zhkd.augment.tables import Table


@cache
def word_slots(word: str, toned: bool) -> tuple[tuple[int, Table], ...]:
    """(character index, its homophones' table) for each character of the word that has homophones:
    computed once per word and process, so a sentence's slots are a few look-ups. A word read by its
    characters' default readings (`default_read`) takes them from the table made at load; any other is
    read as a word (`word_readings`)."""
    table = char_homophones(toned)
    if default_read(word, table):
        return tuple((j, entry) for j, entry in enumerate(map(table.__getitem__, word)) if entry.items)
    return tuple((j, entry) for j, reading in enumerate(word_readings(word, toned))
                 if (entry := homophones(word[j], reading, toned)).items)


@memo
def content_slots(word: str, tag: str, toned: bool) -> tuple[tuple[int, Table], ...]:
    """`word_slots` of a content word (`lexicon.is_content_word`), none of any other: one look-up per word
    of a sentence."""
    return word_slots(word, toned) if is_content_word(word, tag) else ()


class Homophone:
    name = "homophone"
    span_safe = True

    def __init__(self, p: float = 0.1, toned: bool = False) -> None:
        self.p = check_rate(self.name, p)
        self.toned = toned
        self.key = f"homophone:{p}:{toned}"

    def load(self) -> None:
        """The per-character tables, and the slots of the frequent dictionary words (`frequent_words`)."""
        char_homophones(self.toned)
        for word, tag in frequent_words():
            content_slots(word, tag, self.toned)

    def plan(self, seg: Segmented) -> Slots:
        """Every replaceable character (payload: its start and end in the text, word index, index in
        the word) with its homophones, and how many of them a variant changes; remembered per sentence."""
        return seg.remember(self.key, self._slots)

    def _layout(self, seg: Segmented) -> tuple[list, list[int], int]:
        """Each word's slots (`content_slots`), where each word starts, and how many slots the sentence has:
        what `plan` and `batch_plan` are made from, remembered per sentence."""
        return seg.remember(self.key + ":layout", self._words)

    def _words(self, seg: Segmented) -> tuple[list, list[int], int]:
        words, toned = seg.words, self.toned
        entries = list(map(content_slots.table.get, zip(words, seg.pos, repeat(toned))))   # a look-up per word
        if None in entries:   # words this process meets for the first time
            entries = [content_slots(*key) if entry is None else entry
                       for entry, key in zip(entries, zip(words, seg.pos, repeat(toned)), strict=True)]
        if any(seg.ents):   # entity words are never edited
            entries = [() if ent else entry for entry, ent in zip(entries, seg.ents, strict=True)]
        return entries, list(accumulate(map(len, words), initial=0)), sum(map(len, entries))

    def _slots(self, seg: Segmented) -> Slots:
        entries, starts, n = self._layout(seg)
        slots = [((starts[i] + j, starts[i] + j + 1, i, j), table)
                 for i, entry in enumerate(entries) if entry for j, table in entry]
        return Slots(slots, count_for(self.p, n))

    def batch_plan(self, seg: Segmented) -> Substitution | None:
        """The plan's slots as `batch.substitute` takes them (None: nothing to change), made from the
        words' slots without the per-slot payloads, remembered per sentence."""
        return seg.remember(self.key + ":batch", self._batch_plan)

    def _batch_plan(self, seg: Segmented) -> Substitution | None:
        entries, starts, n = self._layout(seg)
        count = count_for(self.p, n)
        if not count:
            return None
        at = [starts[i] + j for i, entry in enumerate(entries) if entry for j, _ in entry]
        return Substitution(seg.text, at, [a + 1 for a in at], [t.id for entry in entries if entry for _, t in entry],
                            count, True)

    def capacity(self, seg: Segmented) -> int | None:
        """At most how many distinct outputs this sentence allows (None: too many to matter)."""
        entries, _, n = self._layout(seg)
        return sum(len(t.items) for entry in entries for _, t in entry) if count_for(self.p, n) <= 1 else None

    def apply(self, seg: Segmented, rng: KeyedRandom) -> Segmented | None:
        slots, count = self.plan(seg)
        if not count:
            return None
        words = list(seg.words)
        for (_, _, i, j), char in rng.picks(slots, count):   # one character for one: positions never shift
            word = words[i]
            words[i] = word[:j] + char + word[j + 1:]
        return Segmented(tuple(words), seg.pos, seg.ents)

    def text_maker(self, seg: Segmented):
        """`apply(seg, rng).text` as a function of the rng, from the same draws: one slice per change."""
        slots, count = self.plan(seg)
        if not count:
            return None
        text = seg.text
        picks = KeyedRandom.picks
        if count == 1:
            def one(rng: KeyedRandom) -> str:
                ((at, _, _, _), char), = picks(rng, slots, 1)
                return text[:at] + char + text[at + 1:]
            return one
        return lambda rng: splice(text, picks(rng, slots, count))

    def texts_batch(self, jobs):
        """The text maker's texts for many attempts of many sentences at once (`batch.substitute`)."""
        return texts_in_batch(self, jobs, self.batch_plan, substitute)
