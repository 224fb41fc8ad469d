"""Teacher agreement with the gold label, and the optional label-preservation filter.

An augmentation may change a sentence's meaning; the teacher is the cheapest judge. A row agrees when
the teacher's argmax equals its source's gold label (NER: at every token the teacher sees; multilabel:
the labels it gives 0.5 or more are the gold set). Confidence is the softmax maximum (NER: its mean over
those tokens; multilabel: the mean over labels of the chosen side's probability). Originals are never dropped;
agreement is reported for originals and augmented rows alike, whether or not the filter is on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Judgement:
    agrees: bool | None  # None for an unlabelled row
    confidence: float


def _softmax_max(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probs = np.exp(shifted)
    return (probs / probs.sum(axis=-1, keepdims=True)).max(axis=-1)


def judge(logits: np.ndarray, *, gold: int | list[int] | None, token_starts: list[int] | None = None) -> Judgement:
    """`gold` is a label index, or per-token tag indices for NER (with `token_starts`)."""
    logits = np.asarray(logits, dtype=np.float64)
    if token_starts is None:
        confidence = float(_softmax_max(logits))
        return Judgement(None if gold is None else int(logits.argmax()) == gold, confidence)
    seen = np.asarray(token_starts) >= 0
    if not seen.any():
        return Judgement(None, 0.0)
    confidence = float(_softmax_max(logits[seen]).mean())
    if gold is None:
        return Judgement(None, confidence)
    predicted = logits[seen].argmax(axis=-1)
    return Judgement(bool((predicted == np.asarray(gold)[seen]).all()), confidence)


def judge_set(logits: np.ndarray, *, gold: list[int] | None) -> Judgement:
    """Multilabel: agreement when the labels whose sigmoid reaches 0.5 are exactly the gold set; confidence
    is the mean over the labels of the probability of the side the teacher chose, max(p, 1 - p)."""
    probs = 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))
    confidence = float(np.maximum(probs, 1.0 - probs).mean()) if probs.size else 0.0
    if gold is None:
        return Judgement(None, confidence)
    return Judgement(set(np.flatnonzero(probs >= 0.5).tolist()) == set(gold), confidence)


@dataclass(frozen=True)
class LabelFilter:
    drop_disagreeing: bool = False
    min_confidence: float = 0.0

    def reason_to_drop(self, judgement: Judgement, *, is_original: bool) -> str | None:
        if is_original:
            return None
        if self.drop_disagreeing and judgement.agrees is False:
            return "disagrees_with_gold"
        if judgement.confidence < self.min_confidence:
            return "low_confidence"
        return None
