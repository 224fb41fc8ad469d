"""`homophone`: replace characters by common characters with the same pinyin, weighted by frequency.

Only characters of plain content words change: names and unknown words (possible names), stop words,
numbers and words holding a negator are left alone, and no negator is ever introduced.
"""

from __future__ import annotations

import random

from zhkd.augment.ops.base import check_rate, choose, content_words, count_for, pick
from zhkd.augment.pinyin import homophones, word_readings
from zhkd.augment.segment import Segmented


class Homophone:
    name = "homophone"
    span_safe = True

    def __init__(self, p: float = 0.1, toned: bool = False) -> None:
        self.p = check_rate(self.name, p)
        self.toned = toned
        self.key = f"homophone:{toned}"

    def slots(self, seg: Segmented) -> list[tuple[int, int, tuple]]:
        """(word index, character index, candidates) of every replaceable character."""
        slots = []
        for i in content_words(seg):
            word = seg.words[i]
            for j, reading in enumerate(word_readings(word, self.toned)):
                cands = homophones(word[j], reading, self.toned)
                if cands[0]:
                    slots.append((i, j, cands))
        return slots

    def apply(self, seg: Segmented, rng: random.Random) -> Segmented | None:
        slots = seg.remember(self.key, self.slots)
        chosen = choose(rng, slots, count_for(self.p, len(slots)))
        if not chosen:
            return None
        words = list(seg.words)
        for i, j, (chars, cum) in chosen:   # one character for one: positions never shift
            word = words[i]
            words[i] = word[:j] + pick(rng, chars, cum) + word[j + 1:]
        return Segmented(tuple(words), seg.pos, seg.ents)
