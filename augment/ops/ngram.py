"""`ngram`: n-gram sampling (Tang et al. 2019) — keep one window of n consecutive words."""

from __future__ import annotations

import random

from zhkd.augment.errors import AugmentError
from zhkd.augment.ops.base import is_wordlike
from zhkd.augment.segment import Segmented


class Ngram:
    name = "ngram"
    span_safe = False   # the window drops the entities outside it

    def __init__(self, n_min: int = 1, n_max: int = 5) -> None:
        if not 1 <= n_min <= n_max:
            raise AugmentError(f"ngram: need 1 <= n_min <= n_max, got {n_min}, {n_max}")
        self.n_min, self.n_max = n_min, n_max

    def apply(self, seg: Segmented, rng: random.Random) -> Segmented | None:
        count = len(seg.words)
        n_max = min(self.n_max, count - 1)
        if n_max < self.n_min:
            return None
        n = rng.randint(self.n_min, n_max)
        starts = [i for i in range(count - n + 1) if is_wordlike(seg.words[i])]
        if not starts:
            return None
        s = rng.choice(starts)
        return Segmented(seg.words[s:s + n], seg.pos[s:s + n], seg.ents[s:s + n])
