"""`synonym`: replace content words by Cilin `=` synonyms, never names, numbers, stop words or negations."""

from __future__ import annotations

import random

from zhkd.augment.ops.base import check_rate, choose, count_for, pick, synonym_slots
from zhkd.augment.segment import Segmented


class Synonym:
    name = "synonym"
    span_safe = True

    def __init__(self, p: float = 0.2) -> None:
        self.p = check_rate(self.name, p)

    def apply(self, seg: Segmented, rng: random.Random) -> Segmented | None:
        slots = synonym_slots(seg)
        chosen = choose(rng, slots, count_for(self.p, len(slots)))
        if not chosen:
            return None
        changes = {}
        for i, sets in chosen:
            words, cum_weights = sets[rng.randrange(len(sets))] if len(sets) > 1 else sets[0]
            changes[i] = pick(rng, words, cum_weights)
        return seg.replace(changes)
