"""`synonym`: replace content words by Cilin `=` synonyms, never names, numbers, stop words or negations."""

from __future__ import annotations

from zhkd.augment.lexicon import synonym_table
from zhkd.augment.ops.base import check_rate, count_for, synonym_slots
from zhkd.augment.rng import KeyedRandom
from zhkd.augment.segment import Segmented


class Synonym:
    name = "synonym"
    span_safe = True

    def __init__(self, p: float = 0.2) -> None:
        self.p = check_rate(self.name, p)

    def load(self) -> None:
        synonym_table()

    def capacity(self, seg: Segmented) -> int | None:
        """At most how many distinct outputs this sentence allows (None: too many to matter)."""
        slots, count = seg.remember(f"synonym:{self.p}", self._plan)
        return sum(len(cands) for _, sets in slots for cands, _ in sets) if count <= 1 else None

    def apply(self, seg: Segmented, rng: KeyedRandom) -> Segmented | None:
        slots, count = seg.remember(f"synonym:{self.p}", self._plan)
        if not count:
            return None
        words = list(seg.words)
        for i, sets in rng.sample(slots, count):
            cands, cum_weights = sets[rng.randrange(len(sets))] if len(sets) > 1 else sets[0]
            words[i] = rng.pick(cands, cum_weights)
        return Segmented(tuple(words), seg.pos, seg.ents)

    def apply_text(self, seg: Segmented, rng: KeyedRandom) -> str | None:
        """`apply(seg, rng).text`, from the same draws, without building a Segmented."""
        slots, count = seg.remember(f"synonym:{self.p}", self._plan)
        if not count:
            return None
        words = list(seg.words)
        for i, sets in rng.sample(slots, count):
            cands, cum_weights = sets[rng.randrange(len(sets))] if len(sets) > 1 else sets[0]
            words[i] = rng.pick(cands, cum_weights)
        return "".join(words)

    def _plan(self, seg: Segmented) -> tuple[list, int]:
        """The replaceable words with their synonym sets, and how many of them a variant replaces."""
        slots = synonym_slots(seg)
        return slots, count_for(self.p, len(slots))
