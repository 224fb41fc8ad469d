"""Scores by task type: accuracy and F1 for classification and pairs, entity-level P/R/F1 for NER,
micro- and macro-F1 over label sets for multilabel.

Pure Python (no torch), so the trainer's dev scores and `zhkd evaluate` share one definition.
"""

from __future__ import annotations

from collections.abc import Sequence


def _f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def classification_scores(gold: Sequence[int], pred: Sequence[int], num_labels: int) -> dict[str, float]:
    """Accuracy, macro-F1 over all labels, and for two labels the F1 of label 1 (the pair tasks' F1)."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    if not gold:
        raise ValueError("no examples to score")
    per_label = []
    for label in range(num_labels):
        tp = sum(g == label and p == label for g, p in zip(gold, pred, strict=True))
        fp = sum(g != label and p == label for g, p in zip(gold, pred, strict=True))
        fn = sum(g == label and p != label for g, p in zip(gold, pred, strict=True))
        per_label.append(_f1(tp, fp, fn)[2])
    scores = {
        "accuracy": sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold),
        "macro_f1": sum(per_label) / num_labels,
    }
    if num_labels == 2:
        scores["f1"] = per_label[1]
    return scores


def entity_spans(tags: Sequence[str]) -> set[tuple[int, int, str]]:
    """(start, end, type) spans of a BIO sequence. An I- that does not continue an entity of its type
    starts a new one (the conlleval convention), so a stray I- still counts as predicted."""
    spans: set[tuple[int, int, str]] = set()
    start, current = None, None
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, etype = tag.partition("-")
        continues = prefix == "I" and etype == current
        if start is not None and not continues:
            spans.add((start, i, current))
            start, current = None, None
        if prefix in ("B", "I") and not continues:
            start, current = i, etype
    return spans


def ner_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level micro precision, recall and F1: a predicted entity counts only with the exact span
    and type. Per-type F1 is reported beside it."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sequences but {len(pred)} predictions")
    counts: dict[str, list[int]] = {}
    for g_tags, p_tags in zip(gold, pred, strict=True):
        if len(g_tags) != len(p_tags):
            raise ValueError(f"sequence of {len(g_tags)} gold tags but {len(p_tags)} predicted")
        g, p = entity_spans(g_tags), entity_spans(p_tags)
        for etype in {s[2] for s in g | p}:
            c = counts.setdefault(etype, [0, 0, 0])
            c[0] += len({s for s in g & p if s[2] == etype})
            c[1] += len({s for s in p - g if s[2] == etype})
            c[2] += len({s for s in g - p if s[2] == etype})
    tp, fp, fn = (sum(c[i] for c in counts.values()) for i in range(3))
    precision, recall, f1 = _f1(tp, fp, fn)
    scores = {"precision": precision, "recall": recall, "f1": f1}
    scores.update({f"f1_{etype}": _f1(*c)[2] for etype, c in sorted(counts.items())})
    return scores




def multilabel_scores(gold: Sequence[Sequence[int]], pred: Sequence[Sequence[int]],
                      label_names: Sequence[str]) -> dict[str, float]:
    """Micro-F1 (true and false positives pooled over every label), macro-F1 (the mean of the labels' own
    F1, so a rare label weighs as much as a frequent one), exact match (the whole set right) and each
    label's F1 (`f1_NAME`). Labels are ids into `label_names`. A row whose gold and predicted sets are
    both empty is an exact match and adds no count; a label never in gold nor predicted has F1 0."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold label sets but {len(pred)} predictions")
    if not gold:
        raise ValueError("no examples to score")
    num_labels = len(label_names)
    counts = [[0, 0, 0] for _ in range(num_labels)]  # tp, fp, fn per label
    exact = 0
    for g_labels, p_labels in zip(gold, pred, strict=True):
        g, p = set(g_labels), set(p_labels)
        exact += g == p
        for label in g | p:
            counts[label][0 if label in g and label in p else 1 if label in p else 2] += 1
    tp, fp, fn = (sum(c[i] for c in counts) for i in range(3))
    per_label = [_f1(*c)[2] for c in counts]
    scores = {"micro_f1": _f1(tp, fp, fn)[2], "macro_f1": sum(per_label) / num_labels if num_labels else 0.0,
              "exact_match": exact / len(gold)}
    scores.update({f"f1_{name}": f1 for name, f1 in zip(label_names, per_label, strict=True)})
    return scores
