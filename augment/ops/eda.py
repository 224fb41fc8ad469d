"""`eda`: word-level swap, deletion and synonym insertion (Wei & Zou's EDA, minus its spaces).

Words are joined as they came, so no space ever appears between Chinese words. Entities are never
deleted, swapped or split; inserted words are Cilin synonyms that pass the synonym filters.
"""

from __future__ import annotations

import random
import re

from zhkd.augment.errors import AugmentError
from zhkd.augment.ops.base import check_rate, choose, count_for, free_words, pick, synonym_slots
from zhkd.augment.segment import Segmented

MODES = ("swap", "delete", "insert")
_CJK_GAP = re.compile(r"[\u3400-\u9fff\uf900-\ufaff] +(?=[\u3400-\u9fff\uf900-\ufaff])")


class Eda:
    span_safe = True

    def __init__(self, mode: str = "swap", p: float = 0.1) -> None:
        if mode not in MODES:
            raise AugmentError(f"eda: unknown mode {mode!r}; one of {', '.join(MODES)}")
        self.mode = mode
        self.p = check_rate("eda", p)
        self.name = f"eda:{mode}"

    def apply(self, seg: Segmented, rng: random.Random) -> Segmented | None:
        if self.p == 0:
            return None
        out = getattr(self, "_" + self.mode)(seg, rng)
        if out is None or out.words == seg.words:
            return None
        # A moved word can land beside a space the input had: never leave a new space between CJK characters.
        if cjk_gaps(out.text) > seg.remember("cjk_gaps", lambda s: cjk_gaps(s.text)):
            return None
        return out

    def _swap(self, seg: Segmented, rng: random.Random) -> Segmented | None:
        slots = free_words(seg)
        if len(set(seg.words[i] for i in slots)) < 2:
            return None
        order = list(range(len(seg.words)))
        for _ in range(count_for(self.p, len(slots))):
            a, b = rng.sample(slots, 2)
            order[a], order[b] = order[b], order[a]
        return _reorder(seg, order)

    def _delete(self, seg: Segmented, rng: random.Random) -> Segmented | None:
        slots = free_words(seg)
        if len(slots) < 2:
            return None
        dropped = set(choose(rng, slots, min(len(slots) - 1, count_for(self.p, len(slots)))))
        return _reorder(seg, [i for i in range(len(seg.words)) if i not in dropped])

    def _insert(self, seg: Segmented, rng: random.Random) -> Segmented | None:
        sources = synonym_slots(seg)
        if not sources:
            return None
        # Insert before a word only where no entity continues (an "I-" word continues the one before it).
        gaps = seg.remember("gaps", _gaps)
        inserts: dict[int, list[tuple[str, str]]] = {}
        for _ in range(count_for(self.p, len(free_words(seg)))):
            i, sets = rng.choice(sources)
            cands, cum = sets[rng.randrange(len(sets))]
            inserts.setdefault(rng.choice(gaps), []).append((pick(rng, cands, cum), seg.pos[i]))
        words: list[str] = []
        pos: list[str] = []
        ents: list[str | None] = []
        for at in range(len(seg.words) + 1):
            for word, tag in inserts.get(at, ()):
                words.append(word)
                pos.append(tag)
                ents.append(None)
            if at < len(seg.words):
                words.append(seg.words[at])
                pos.append(seg.pos[at])
                ents.append(seg.ents[at])
        return Segmented(tuple(words), tuple(pos), tuple(ents))


def cjk_gaps(text: str) -> int:
    """How many runs of spaces sit between two CJK characters."""
    return len(_CJK_GAP.findall(text)) if " " in text else 0


def _gaps(seg: Segmented) -> list[int]:
    return [i for i in range(len(seg.words) + 1) if i == len(seg.words) or not (seg.ents[i] or "").startswith("I-")]


def _reorder(seg: Segmented, order: list[int]) -> Segmented:
    return Segmented(tuple(seg.words[i] for i in order), tuple(seg.pos[i] for i in order),
                     tuple(seg.ents[i] for i in order))
