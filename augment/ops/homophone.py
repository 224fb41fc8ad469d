"""`homophone`: replace characters by common characters with the same pinyin, weighted by frequency.

Only characters of plain content words change: names and unknown words (possible names), stop words,
numbers and words holding a negator are left alone, and no negator is ever introduced.
"""

from __future__ import annotations

from functools import cache

from zhkd.augment.ops.base import Slots, check_rate, content_words, count_for, draw_slots
from zhkd.augment.pinyin import homophone_tables, homophones, word_readings
from zhkd.augment.rng import KeyedRandom
from zhkd.augment.segment import Segmented


@cache
def word_slots(word: str, toned: bool) -> tuple[tuple[int, tuple[str, ...], tuple[float, ...]], ...]:
    """(character index, homophones, their cumulative weights) for each character of the word that has
    homophones: computed once per word and process, so a sentence's slots are a few look-ups."""
    slots = []
    for j, reading in enumerate(word_readings(word, toned)):
        chars, cum = homophones(word[j], reading, toned)
        if chars:
            slots.append((j, chars, cum))
    return tuple(slots)


class Homophone:
    name = "homophone"
    span_safe = True

    def __init__(self, p: float = 0.1, toned: bool = False) -> None:
        self.p = check_rate(self.name, p)
        self.toned = toned
        self.key = f"homophone:{p}:{toned}"

    def load(self) -> None:
        homophone_tables(self.toned)

    def slots(self, seg: Segmented) -> Slots:
        """Every replaceable character (payload: word index, character index, offset in the text) with
        its homophones, and how many of them a variant changes."""
        words, toned = seg.words, self.toned
        slots, start, starts = [], 0, []
        for word in words:
            starts.append(start)
            start += len(word)
        for i in content_words(seg):
            for j, chars, cum in word_slots(words[i], toned):
                slots.append(((i, j, starts[i] + j), ((chars, cum),)))
        return Slots(slots, count_for(self.p, len(slots)))

    def capacity(self, seg: Segmented) -> int | None:
        """At most how many distinct outputs this sentence allows (None: too many to matter)."""
        plan = seg.remember(self.key, self.slots)
        return plan.capacity() if plan.count <= 1 else None

    def apply(self, seg: Segmented, rng: KeyedRandom) -> Segmented | None:
        plan = seg.remember(self.key, self.slots)
        if not plan.count:
            return None
        words = list(seg.words)
        for (i, j, _), char in draw_slots(plan, rng):   # one character for one: positions never shift
            word = words[i]
            words[i] = word[:j] + char + word[j + 1:]
        return Segmented(tuple(words), seg.pos, seg.ents)

    def apply_text(self, seg: Segmented, rng: KeyedRandom) -> str | None:
        """`apply(seg, rng).text`, from the same draws, without building the words: one slice per change."""
        plan = seg.remember(self.key, self.slots)
        if not plan.count:
            return None
        text = seg.remember("text", _text)
        if plan.count == 1:
            ((_, _, at), char), = draw_slots(plan, rng)
            return text[:at] + char + text[at + 1:]
        out = list(text)
        for (_, _, at), char in draw_slots(plan, rng):
            out[at] = char
        return "".join(out)


def _text(seg: Segmented) -> str:
    return seg.text
