"""`synonym`: replace content words by Cilin `=` synonyms, never names, numbers, stop words or negations."""

from __future__ import annotations

from functools import cache
from itertools import accumulate

from zhkd.augment.batch import Substitution, substitute
from zhkd.augment.lexicon import frequent_words, is_content_word, synonym_sets, synonym_table
from zhkd.augment.memo import memo
from zhkd.augment.ops.base import Slots, check_rate, count_for, splice, texts_in_batch
from zhkd.augment.rng import KeyedRandom
from zhkd.augment.segment import Segmented
from zhkd.augment.tables import EMPTY, Table, make_table


class Synonym:
    name = "synonym"
    span_safe = True

    def __init__(self, p: float = 0.2) -> None:
        self.p = check_rate(self.name, p)
        self.key = f"synonym:{p}"

    def load(self) -> None:
        """The synonym table, and the tables of the frequent dictionary words that have synonyms
        (`frequent_words`)."""
        table = synonym_table()
        for word, tag in frequent_words():
            if word in table:
                content_table(word, tag)

    def capacity(self, seg: Segmented) -> int | None:
        """At most how many distinct outputs this sentence allows (None: too many to matter)."""
        tables, _ = self._layout(seg)
        n = sum(1 for table in tables if table.items)
        return sum(len(table.items) for table in tables) if count_for(self.p, n) <= 1 else None

    def apply(self, seg: Segmented, rng: KeyedRandom) -> Segmented | None:
        slots, count = self.plan(seg)
        if not count:
            return None
        words = list(seg.words)
        for (_, _, i), word in rng.picks(slots, count):
            words[i] = word
        return Segmented(tuple(words), seg.pos, seg.ents)

    def text_maker(self, seg: Segmented):
        """`apply(seg, rng).text` as a function of the rng, from the same draws: the text spliced."""
        slots, count = self.plan(seg)
        if not count:
            return None
        text, picks = seg.text, KeyedRandom.picks
        return lambda rng: splice(text, picks(rng, slots, count))

    def texts_batch(self, jobs):
        """The text maker's texts for many attempts of many sentences at once (`batch.substitute`)."""
        return texts_in_batch(self, jobs, self.batch_plan, substitute)

    def plan(self, seg: Segmented) -> Slots:
        """The replaceable words (payload: start and end in the text, word index) with one weighted table
        of their synonyms each: a word's Cilin groups take equal shares of it, its synonyms within a group
        weighted as synonym_sets weighs them; and how many words a variant replaces. Remembered per
        sentence."""
        return seg.remember(self.key, self._plan)

    def _layout(self, seg: Segmented) -> tuple[list[Table], list[int]]:
        """Each word's synonym table (EMPTY: none) and where each word starts: what `plan` and `batch_plan`
        are made from, remembered per sentence."""
        return seg.remember(self.key + ":layout", self._words)

    def _words(self, seg: Segmented) -> tuple[list[Table], list[int]]:
        words = seg.words
        tables = list(map(content_table.table.get, zip(words, seg.pos, strict=True)))   # a look-up per word
        if None in tables:   # words this process meets for the first time
            tables = [content_table(*key) if table is None else table
                      for table, key in zip(tables, zip(words, seg.pos, strict=True), strict=True)]
        if any(seg.ents):   # entity words are never replaced
            tables = [EMPTY if ent else table for table, ent in zip(tables, seg.ents, strict=True)]
        return tables, list(accumulate(map(len, words), initial=0))

    def _plan(self, seg: Segmented) -> Slots:
        tables, starts = self._layout(seg)
        slots = [((starts[i], starts[i + 1], i), table) for i, table in enumerate(tables) if table.items]
        return Slots(slots, count_for(self.p, len(slots)))

    def batch_plan(self, seg: Segmented) -> Substitution | None:
        """The plan's slots as `batch.substitute` takes them (None: nothing to change), remembered per
        sentence."""
        return seg.remember(self.key + ":batch", self._batch_plan)

    def _batch_plan(self, seg: Segmented) -> Substitution | None:
        tables, starts = self._layout(seg)
        chosen = [i for i, table in enumerate(tables) if table.items]
        count = count_for(self.p, len(chosen))
        if not count:
            return None
        return Substitution(seg.text, [starts[i] for i in chosen], [starts[i + 1] for i in chosen],
                            [tables[i].id for i in chosen], count, False)


@memo
def content_table(word: str, tag: str) -> Table:
    """The table of a content word's synonyms (`merged_sets` of its `synonym_sets`), EMPTY for a word that
    is not a content word or has no synonyms (the words `ops.base.synonym_slots` leaves out)."""
    sets = synonym_sets(word, tag) if is_content_word(word, tag) else ()
    return merged_sets(sets) if sets else EMPTY


@cache
def merged_sets(sets: tuple[tuple[tuple[str, ...], tuple[float, ...]], ...]) -> Table:
    """One table for a word's synonym sets, each set an equal share (set m spans [m, m + 1) of the
    cumulative weights), made once per word and process."""
    if len(sets) == 1:
        return make_table(*sets[0])
    cands: list[str] = []
    cum: list[float] = []
    for m, (words, weights) in enumerate(sets):
        cands += words
        cum += [m + w / weights[-1] for w in weights]
    cum[-1] = float(len(sets))   # the total exact, however the divisions rounded
    return make_table(cands, cum)
