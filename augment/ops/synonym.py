"""`synonym`: replace content words by Cilin `=` synonyms, never names, numbers, stop words or negations."""

from __future__ import annotations

from zhkd.augment.lexicon import synonym_table
from zhkd.augment.ops.base import Slots, check_rate, count_for, draw_slots, synonym_slots
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
        table = seg.remember(self.key, self._plan)
        if not table.count:
            return None
        words = list(seg.words)
        for (i,), word in draw_slots(table, rng):
            words[i] = word
        return Segmented(tuple(words), seg.pos, seg.ents)

    def apply_text(self, seg: Segmented, rng: KeyedRandom) -> str | None:
        """`apply(seg, rng).text`, from the same draws, without building a Segmented."""
        table = seg.remember(self.key, self._plan)
        if not table.count:
            return None
        words = list(seg.words)
        for (i,), word in draw_slots(table, rng):
            words[i] = word
        return "".join(words)

    def _plan(self, seg: Segmented) -> Slots:
        """The replaceable words with their synonym sets (each an equal share of its word's draws), and
        how many of them a variant replaces."""
        slots = synonym_slots(seg)
        return Slots([((i,), sets) for i, sets in slots], count_for(self.p, len(slots)))
