"""`convert`: Simplified/Traditional conversion with OpenCC, word by word so segmentation and entities
carry through (a whole-sentence conversion is split back at word boundaries when lengths allow)."""

from __future__ import annotations

from functools import cache

from zhkd.augment.errors import AugmentError
from zhkd.augment.segment import Segmented

CONFIGS = ("s2t", "s2tw", "s2twp", "s2hk", "t2s", "tw2s", "hk2s")
INVERSE = {"s2t": "t2s", "s2tw": "tw2s", "s2twp": "tw2s", "s2hk": "hk2s", "t2s": "s2t", "tw2s": "s2tw",
           "hk2s": "s2hk"}


@cache
def converter(config: str):
    import opencc

    return opencc.OpenCC(config)


def convert_text(text: str, config: str) -> str:
    return converter(config).convert(text)


class Convert:
    span_safe = True

    def __init__(self, config: str = "s2t") -> None:
        if config not in CONFIGS:
            raise AugmentError(f"convert: unknown OpenCC config {config!r}; one of {', '.join(CONFIGS)}")
        self.config = config
        self.name = f"convert:{config}"

    def capacity(self, seg: Segmented) -> int:
        """One output at most: the conversion is the same on every attempt."""
        return 0 if self._convert_once(seg) is None else 1

    def _convert_once(self, seg: Segmented) -> Segmented | None:
        return seg.remember(self.name, self._convert)

    def apply(self, seg: Segmented, rng) -> Segmented | None:
        """Deterministic: the rng is unused, and the result is remembered for the sentence's other variants."""
        return self._convert_once(seg)

    def _convert(self, seg: Segmented) -> Segmented | None:
        cc = converter(self.config)
        text = seg.text
        converted = cc.convert(text)
        if converted == text:
            return None
        if len(converted) == len(text):
            words = [converted[a:b] for a, b in seg.spans()]
        else:
            words = [cc.convert(w) for w in seg.words]
        for i, ent in enumerate(seg.ents):
            if ent is not None:
                words[i] = cc.convert(seg.words[i])
        return Segmented(tuple(words), seg.pos, seg.ents)
