"""`eda`: word-level swap, deletion and synonym insertion (Wei & Zou's EDA, minus its spaces).

Words are joined as they came, so no space ever appears between Chinese words. Entities are never
deleted, swapped or split; inserted words are Cilin synonyms that pass the synonym filters.
"""

from __future__ import annotations

import re

from zhkd.augment.batch import delete, deletion_plan, swap, swap_plan
from zhkd.augment.errors import AugmentError
from zhkd.augment.lexicon import synonym_table
from zhkd.augment.ops.base import check_rate, count_for, free_words, synonym_slots, texts_in_batch, texts_one_by_one
from zhkd.augment.rng import KeyedRandom
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

    def load(self) -> None:
        if self.mode == "insert":
            synonym_table()

    def apply(self, seg: Segmented, rng: KeyedRandom) -> Segmented | None:
        if self.p == 0:
            return None
        out = getattr(self, "_" + self.mode)(seg, rng)
        if out is None or out.words == seg.words:
            return None
        # A moved word can land beside a space the input had: never leave a new space between CJK
        # characters. (A sentence without a space cannot gain one: words are moved, dropped or synonyms.)
        gaps = seg.remember("cjk_gaps", _cjk_gaps)
        if gaps is not None and cjk_gaps(out.text) > gaps:
            return None
        return out

    def text_maker(self, seg: Segmented):
        """`apply(seg, rng).text` as a function of the rng, from the same draws; a swap moves only the
        words (no Segmented), its pairs drawn one word each (`KeyedRandom.pairs`)."""
        if self.p == 0:
            return None
        if self.mode == "delete":
            return self._delete_maker(seg)
        if self.mode != "swap":
            apply = self.apply
            return lambda rng: None if (out := apply(seg, rng)) is None else out.text
        slots, count = seg.remember(f"swap:{self.p}", self._swap_plan)
        if not count:
            return None
        source, n, pairs = seg.words, len(slots), KeyedRandom.pairs
        gaps = seg.remember("cjk_gaps", _cjk_gaps)

        def swap(rng: KeyedRandom) -> str | None:
            words = list(source)
            for a, b in pairs(rng, n, count):
                a, b = slots[a], slots[b]
                words[a], words[b] = words[b], words[a]
            if tuple(words) == source:
                return None
            text = "".join(words)
            return None if gaps is not None and cjk_gaps(text) > gaps else text

        return swap

    def texts_batch(self, jobs):
        """The text maker's texts for many attempts of many sentences: swaps and deletions in one batch
        (`batch.swap`, `batch.delete`), insertions one attempt at a time."""
        if self.mode == "insert" or self.p == 0:
            return texts_one_by_one(self, jobs)
        if self.mode == "delete":
            return texts_in_batch(self, jobs, self._deletion_plan, delete)

        def plan_of(seg: Segmented):
            slots, count = seg.remember(f"swap:{self.p}", self._swap_plan)
            return seg.remember(f"swap:{self.p}:batch", lambda s: swap_plan(
                s.words, slots, count, s.remember("cjk_gaps", _cjk_gaps))) if count else None

        return texts_in_batch(self, jobs, plan_of, swap)

    def _deletion_plan(self, seg: Segmented):
        """The sentence's deletion plan as `batch.delete` takes it (None: fewer than two movable words),
        remembered per sentence."""
        return seg.remember(f"delete:{self.p}:batch", lambda s: None if (drops := self._drops(s)) is None
                            else deletion_plan(s.words, *drops, s.remember("cjk_gaps", _cjk_gaps)))

    def _drops(self, seg: Segmented) -> tuple[list[int], int] | None:
        """The words a deletion may drop and how many it drops (always one word kept); None when fewer than
        two words are movable."""
        slots = free_words(seg)
        if len(slots) < 2:
            return None
        return slots, min(len(slots) - 1, count_for(self.p, len(slots)))

    def _delete_maker(self, seg: Segmented):
        """`_delete`'s text from the same draw, the kept words joined (no Segmented). Dropping a word always
        changes the words, so only the space check can refuse an attempt."""
        if (drops := self._drops(seg)) is None:
            return None
        (slots, count), words, gaps = drops, seg.words, seg.remember("cjk_gaps", _cjk_gaps)
        sample = KeyedRandom.sample

        def drop(rng: KeyedRandom) -> str | None:
            dropped = sample(rng, slots, count)
            if count == 1:
                i, = dropped
                text = "".join(words[:i]) + "".join(words[i + 1:])
            else:
                dropped = set(dropped)
                text = "".join([w for i, w in enumerate(words) if i not in dropped])
            return None if gaps is not None and cjk_gaps(text) > gaps else text

        return drop

    def _swap_plan(self, seg: Segmented) -> tuple[list[int], int]:
        """The movable words, and how many swaps a variant makes (0 when fewer than two distinct words)."""
        slots = free_words(seg)
        if len(set(seg.words[i] for i in slots)) < 2:
            return slots, 0
        return slots, count_for(self.p, len(slots))

    def _swap(self, seg: Segmented, rng: KeyedRandom) -> Segmented | None:
        slots, count = seg.remember(f"swap:{self.p}", self._swap_plan)
        if not count:
            return None
        words, pos, ents = list(seg.words), list(seg.pos), list(seg.ents)
        for a, b in rng.pairs(len(slots), count):
            a, b = slots[a], slots[b]
            words[a], words[b] = words[b], words[a]
            pos[a], pos[b] = pos[b], pos[a]
            ents[a], ents[b] = ents[b], ents[a]
        return Segmented(tuple(words), tuple(pos), tuple(ents))

    def _delete(self, seg: Segmented, rng: KeyedRandom) -> Segmented | None:
        if (drops := self._drops(seg)) is None:
            return None
        dropped = set(rng.sample(*drops))
        return _reorder(seg, [i for i in range(len(seg.words)) if i not in dropped])

    def _insert(self, seg: Segmented, rng: KeyedRandom) -> Segmented | None:
        sources = synonym_slots(seg)
        if not sources:
            return None
        # Insert before a word only where no entity continues (an "I-" word continues the one before it).
        gaps = seg.remember("gaps", _gaps)
        inserts: dict[int, list[tuple[str, str]]] = {}
        for _ in range(count_for(self.p, len(free_words(seg)))):
            i, sets = rng.choice(sources)
            cands, cum = sets[rng.randrange(len(sets))]
            inserts.setdefault(rng.choice(gaps), []).append((rng.pick(cands, cum), seg.pos[i]))
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


def _cjk_gaps(seg: Segmented) -> int | None:
    """The input's runs of spaces between CJK characters (None: it has no space, so none can appear)."""
    text = seg.text
    return cjk_gaps(text) if " " in text else None


def _gaps(seg: Segmented) -> list[int]:
    return [i for i in range(len(seg.words) + 1) if i == len(seg.words) or not (seg.ents[i] or "").startswith("I-")]


def _reorder(seg: Segmented, order: list[int]) -> Segmented:
    return Segmented(tuple(seg.words[i] for i in order), tuple(seg.pos[i] for i in order),
                     tuple(seg.ents[i] for i in order))
