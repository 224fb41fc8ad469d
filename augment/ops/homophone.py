"""`homophone`: replace characters by common characters with the same pinyin, weighted by frequency.

Only characters of plain content words change: names and unknown words (possible names), stop words,
numbers and words holding a negator are left alone, and no negator is ever introduced.
"""

from __future__ import annotations

from functools import cache
from itertools import accumulate

from zhkd.augment.ops.base import Slots, check_rate, content_words, count_for, splice
from zhkd.augment.pinyin import char_homophones, default_read, homophones, word_readings
from zhkd.augment.rng import KeyedRandom
from zhkd.augment.segment import Segmented


@cache
def word_slots(word: str, toned: bool) -> tuple[tuple[int, tuple[str, ...], tuple[float, ...], float], ...]:
    """(character index, homophones, their cumulative weights but the last, the total) for each
    character of the word that has homophones: computed once per word and process, so a sentence's
    slots are a few look-ups. A word read by its characters' default readings (`default_read`) takes
    them from the table made at load; any other is read as a word (`word_readings`)."""
    table = char_homophones(toned)
    if default_read(word, table):
        return tuple((j, *entry) for j, entry in enumerate(map(table.__getitem__, word)) if entry[0])
    slots = []
    for j, reading in enumerate(word_readings(word, toned)):
        chars, cum = homophones(word[j], reading, toned)
        if chars:
            slots.append((j, chars, cum[:-1], cum[-1]))
    return tuple(slots)


class Homophone:
    name = "homophone"
    span_safe = True

    def __init__(self, p: float = 0.1, toned: bool = False) -> None:
        self.p = check_rate(self.name, p)
        self.toned = toned
        self.key = f"homophone:{p}:{toned}"

    def load(self) -> None:
        char_homophones(self.toned)

    def slots(self, seg: Segmented) -> Slots:
        """Every replaceable character (payload: its start and end in the text, word index, index in
        the word) with its homophones, and how many of them a variant changes."""
        words, toned = seg.words, self.toned
        starts = [0, *accumulate(map(len, words))]
        slots = [((starts[i] + j, starts[i] + j + 1, i, j), chars, bounds, total)
                 for i in content_words(seg) for j, chars, bounds, total in word_slots(words[i], toned)]
        return Slots(slots, count_for(self.p, len(slots)))

    def capacity(self, seg: Segmented) -> int | None:
        """At most how many distinct outputs this sentence allows (None: too many to matter)."""
        plan = seg.remember(self.key, self.slots)
        return plan.capacity() if plan.count <= 1 else None

    def apply(self, seg: Segmented, rng: KeyedRandom) -> Segmented | None:
        slots, count = seg.remember(self.key, self.slots)
        if not count:
            return None
        words = list(seg.words)
        for (_, _, i, j), char in rng.picks(slots, count):   # one character for one: positions never shift
            word = words[i]
            words[i] = word[:j] + char + word[j + 1:]
        return Segmented(tuple(words), seg.pos, seg.ents)

    def text_maker(self, seg: Segmented):
        """`apply(seg, rng).text` as a function of the rng, from the same draws: one slice per change."""
        slots, count = seg.remember(self.key, self.slots)
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
