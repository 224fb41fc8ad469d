"""`synonym`: replace content words by Cilin `=` synonyms, never names, numbers, stop words or negations."""

from __future__ import annotations

from functools import cache

from zhkd.augment.lexicon import synonym_table
from zhkd.augment.ops.base import Slots, check_rate, count_for, splice, synonym_slots
from zhkd.augment.rng import KeyedRandom
from zhkd.augment.segment import Segmented


class Synonym:
    name = "synonym"
    span_safe = True

    def __init__(self, p: float = 0.2) -> None:
        self.p = check_rate(self.name, p)
        self.key = f"synonym:{p}"

    def load(self) -> None:
        synonym_table()

    def capacity(self, seg: Segmented) -> int | None:
        """At most how many distinct outputs this sentence allows (None: too many to matter)."""
        table = seg.remember(self.key, self._plan)
        return table.capacity() if table.count <= 1 else None

    def apply(self, seg: Segmented, rng: KeyedRandom) -> Segmented | None:
        slots, count = seg.remember(self.key, self._plan)
        if not count:
            return None
        words = list(seg.words)
        for (_, _, i), word in rng.picks(slots, count):
            words[i] = word
        return Segmented(tuple(words), seg.pos, seg.ents)

    def text_maker(self, seg: Segmented):
        """`apply(seg, rng).text` as a function of the rng, from the same draws: the text spliced."""
        slots, count = seg.remember(self.key, self._plan)
        if not count:
            return None
        text, picks = seg.text, KeyedRandom.picks
        return lambda rng: splice(text, picks(rng, slots, count))

    def _plan(self, seg: Segmented) -> Slots:
        """The replaceable words (payload: start and end in the text, word index) with one weighted table
        of their synonyms each: a word's Cilin groups take equal shares of it (group m spans [m, m + 1)),
        its synonyms within a group weighted as synonym_sets weighs them; and how many words a variant
        replaces."""
        starts, at = [], 0
        for word in seg.words:
            starts.append(at)
            at += len(word)
        slots = []
        for i, sets in synonym_slots(seg):
            slots.append(((starts[i], starts[i] + len(seg.words[i]), i), *merged_sets(sets)))
        return Slots(slots, count_for(self.p, len(slots)))


@cache
def merged_sets(sets: tuple[tuple[tuple[str, ...], tuple[float, ...]], ...]) -> tuple[tuple, tuple, float]:
    """One table for a word's synonym sets, each set an equal share (see Synonym._plan), as `picks` takes
    it (candidates, cumulative weights but the last, the total); made once per word and process."""
    if len(sets) == 1:
        cands, cum = sets[0]
        return cands, cum[:-1], cum[-1]
    cands: list[str] = []
    cum: list[float] = []
    for m, (words, weights) in enumerate(sets):
        cands += words
        cum += [m + w / weights[-1] for w in weights]
    return tuple(cands), tuple(cum[:-1]), float(len(sets))   # the total exact, however the divisions rounded
