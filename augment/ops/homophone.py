"""`homophone`: replace characters by common characters with the same pinyin, weighted by frequency.

Only characters of plain content words change: names and unknown words (possible names), stop words,
numbers and words holding a negator are left alone, and no negator is ever introduced.
"""

from __future__ import annotations

from functools import cache

from zhkd.augment.ops.base import check_rate, content_words, count_for
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

    def slots(self, seg: Segmented) -> tuple[list[tuple[int, int, tuple, tuple]], int]:
        """(word index, character index, candidates, cumulative weights) of every replaceable character,
        and how many of them a variant changes."""
        words, toned = seg.words, self.toned
        slots = [(i, j, chars, cum) for i in content_words(seg) for j, chars, cum in word_slots(words[i], toned)]
        return slots, count_for(self.p, len(slots))

    def capacity(self, seg: Segmented) -> int | None:
        """At most how many distinct outputs this sentence allows (None: too many to matter)."""
        slots, count = seg.remember(self.key, self.slots)
        return sum(len(chars) for _, _, chars, _ in slots) if count <= 1 else None

    def apply(self, seg: Segmented, rng: KeyedRandom) -> Segmented | None:
        slots, count = seg.remember(self.key, self.slots)
        if not count:
            return None
        words = list(seg.words)
        for i, j, chars, cum in rng.sample(slots, count):   # one character for one: positions never shift
            word = words[i]
            words[i] = word[:j] + rng.pick(chars, cum) + word[j + 1:]
        return Segmented(tuple(words), seg.pos, seg.ents)

    def text_slots(self, seg: Segmented) -> tuple[str, list[tuple[int, tuple, tuple]], int]:
        """The sentence's text, its slots as (character offset in the text, candidates, cumulative
        weights) in the order of `slots`, and the change count."""
        slots, count = seg.remember(self.key, self.slots)
        starts = [start for start, _ in seg.spans()]
        return seg.text, [(starts[i] + j, chars, cum) for i, j, chars, cum in slots], count

    def apply_text(self, seg: Segmented, rng: KeyedRandom) -> str | None:
        """`apply(seg, rng).text`, from the same draws, without building the words: one slice per change."""
        text, slots, count = seg.remember(self.key + ":text", self.text_slots)
        if not count:
            return None
        if count == 1:
            at, chars, cum = rng.sample(slots, 1)[0]
            return text[:at] + rng.pick(chars, cum) + text[at + 1:]
        out = list(text)
        for at, chars, cum in rng.sample(slots, count):
            out[at] = rng.pick(chars, cum)
        return "".join(out)
