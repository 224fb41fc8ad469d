"""`mask`: replace words by the mask token (Tang et al. 2019), one token per character of a Chinese word,
so a character-level model sees the word's length as BERT's whole-word masking shows it."""

from __future__ import annotations

from zhkd.augment.charset import MASK_TOKEN, is_cjk_word
from zhkd.augment.ops.base import check_rate, count_for, free_words
from zhkd.augment.rng import KeyedRandom
from zhkd.augment.segment import Segmented


class Mask:
    name = "mask"
    span_safe = True

    def __init__(self, p: float = 0.1, token: str = MASK_TOKEN) -> None:
        self.p = check_rate(self.name, p)
        self.token = token

    def apply(self, seg: Segmented, rng: KeyedRandom) -> Segmented | None:
        slots = [i for i in free_words(seg) if self.token not in seg.words[i]]
        chosen = rng.sample(slots, count_for(self.p, len(slots)))
        if not chosen:
            return None
        return seg.replace({i: self.token * (len(seg.words[i]) if is_cjk_word(seg.words[i]) else 1)
                            for i in chosen})
