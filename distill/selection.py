"""Choosing models, as the paper does: the teacher by dev score, the student by a budget.

Teacher: evaluate every candidate on the dev split and take the best primary score; a tie (within
`tie_tolerance`) goes to the better calibrated one, by expected calibration error. Student: measure
every catalogue shape's latency on this device next to the teacher's, count its parameters, and take
the most capable (most parameters) shape that meets the target speed-up and size. Both return the
figures they decided on so the trainer can log them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from zhkd.distill.errors import DistillError
from zhkd.distill.metrics import classification_scores, multilabel_scores, ner_scores
from zhkd.distill.predict import _predict, argmax, present_labels
from zhkd.tasks import MULTILABEL, SEQUENCE, TOKEN, get_task


def expected_calibration_error(probabilities: Sequence[Sequence[float]], gold: Sequence[int], *,
                               bins: int = 15) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size (Guo et al. 2017)."""
    if not gold:
        raise DistillError("no examples to calibrate on")
    totals = [[0, 0.0, 0.0] for _ in range(bins)]  # count, summed confidence, summed correctness
    for probs, label in zip(probabilities, gold, strict=True):
        confidence = max(probs)
        predicted = argmax(probs)
        slot = totals[min(bins - 1, int(confidence * bins))]
        slot[0] += 1
        slot[1] += confidence
        slot[2] += predicted == label
    return sum(abs(correct - conf) for _, conf, correct in totals) / len(gold)


def _softmax(logits: Sequence[float]) -> list[float]:
    top = max(logits)
    exps = [math.exp(x - top) for x in logits]
    total = sum(exps)
    return [e / total for e in exps]


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _sequence_figures(rows, logits, has_piece, label_names):
    probs = [_softmax(row) for row in logits]
    gold = [r["label"] for r in rows]
    return classification_scores(gold, [argmax(p) for p in probs], len(label_names)), probs, gold


def _token_figures(rows, logits, has_piece, label_names):
    outside = label_names.index("O") if "O" in label_names else 0
    probs, gold, gold_tags, pred_tags = [], [], [], []
    for row, row_logits, pieces in zip(rows, logits, has_piece, strict=True):
        row_probs = [_softmax(t) for t in row_logits]
        preds = [argmax(p) if piece else outside for p, piece in zip(row_probs, pieces, strict=True)]
        gold_tags.append([label_names[g] for g in row["tags"]])
        pred_tags.append([label_names[p] for p in preds])
        probs += [p for p, piece in zip(row_probs, pieces, strict=True) if piece]
        gold += [g for g, piece in zip(row["tags"], pieces, strict=True) if piece]
    return ner_scores(gold_tags, pred_tags), probs, gold


def _multilabel_figures(rows, logits, has_piece, label_names):
    """Each (row, label) is a yes/no prediction: calibration is measured over those binary decisions."""
    scores = multilabel_scores([r["labels"] for r in rows], [present_labels(row) for row in logits], label_names)
    probs, gold = [], []
    for row, row_logits in zip(rows, logits, strict=True):
        present = set(row["labels"])
        for label, z in enumerate(row_logits):
            p = _sigmoid(z)
            probs.append([1.0 - p, p])
            gold.append(int(label in present))
    return scores, probs, gold


# Per label kind: (scores, probabilities of each decision, its gold) from a model's logits on dev rows.
DEV_FIGURES = {SEQUENCE: _sequence_figures, TOKEN: _token_figures, MULTILABEL: _multilabel_figures}


def dev_report(model, tokenizer, rows: Sequence[dict], task: str, label_names: list[str], *,
               batch_size: int = 32, max_length: int = 512, device: str | None = None) -> dict:
    """Scores (the task's metrics), the primary score, and ECE of a model on labelled dev rows.

    NER tokens without a piece of their own are predicted as "O" and left out of the ECE; multilabel
    ECE is over every (row, label) decision.
    """
    spec = get_task(task)
    logits, has_piece = _predict(model, tokenizer, rows, task, batch_size=batch_size, max_length=max_length,
                                 device=device, progress=False)
    scores, probs, gold = DEV_FIGURES[spec.label_kind](rows, logits, has_piece, label_names)
    return {"score": scores[spec.headline], "metric": spec.headline,
            "ece": expected_calibration_error(probs, gold), "scores": scores}


def select_teacher(candidates: Sequence[str | Path], rows: Sequence[dict], task: str, label_names: list[str], *,
                   tie_tolerance: float = 1e-9, log: Callable[[dict], None] = lambda event: None,
                   **predict_kw) -> tuple[str, list[dict]]:
    """The candidate with the best dev score (ties: lowest ECE), and every candidate's figures."""
    from zhkd.models import head_mismatch, load_model, load_tokenizer, model_labels

    if not candidates:
        raise DistillError("no teacher candidates given")
    figures = []
    for candidate in candidates:
        model = load_model(get_task(task).model_kind, candidate)
        if model_labels(model) != list(label_names):
            raise DistillError(f"teacher {candidate} has labels {model_labels(model)}, the data has {label_names}")
        mismatch = head_mismatch(model.config, task)
        if mismatch:
            raise DistillError(f"teacher {candidate} {mismatch}")
        report = dev_report(model, load_tokenizer(candidate), rows, task, label_names, **predict_kw)
        figures.append({"teacher": str(candidate), **report})
    best = max(figures, key=lambda f: f["score"])
    tied = [f for f in figures if best["score"] - f["score"] <= tie_tolerance]
    chosen = min(tied, key=lambda f: f["ece"])
    log({"event": "select_teacher", "chosen": chosen["teacher"], "candidates": figures})
    return chosen["teacher"], figures


@dataclass(frozen=True)
class StudentCandidate:
    shape: str
    params: int
    latency_ms: float
    speedup: float
    meets: bool


def select_student(teacher, *, kind: str, num_labels: int, speedup: float | None = None,
                   max_params: int | None = None, shapes: Sequence[str] | None = None,
                   latency_ms: Callable[[object], float] | None = None,
                   log: Callable[[dict], None] = lambda event: None) -> tuple[str, list[StudentCandidate]]:
    """The most capable catalogue shape within the budget, with every candidate's measurements.

    `latency_ms(model)` times one forward (default: `measure_latency`'s median at batch 1, 64 tokens, on
    this device). Candidates are built at random with the teacher's vocabulary size.
    """
    from zhkd.distill.students import build_model, parameter_count, student_names

    if speedup is None and max_params is None:
        raise DistillError("student selection needs a target speed-up or a parameter budget")
    if latency_ms is None:
        from zhkd.distill.latency import measure_latency

        def latency_ms(model):
            return measure_latency(model, seq_len=64, batch_size=1, runs=20).p50_ms

    teacher_ms = latency_ms(teacher)
    candidates = []
    for name in shapes or student_names():
        model = build_model(name, kind=kind, vocab_size=teacher.config.vocab_size, num_labels=num_labels)
        ms, params = latency_ms(model), parameter_count(model)
        ratio = teacher_ms / ms
        meets = (speedup is None or ratio >= speedup) and (max_params is None or params <= max_params)
        candidates.append(StudentCandidate(name, params, ms, ratio, meets))
    fitting = [c for c in candidates if c.meets]
    log({"event": "select_student", "teacher_ms": teacher_ms, "target_speedup": speedup, "max_params": max_params,
         "chosen": max(fitting, key=lambda c: c.params).shape if fitting else None,
         "candidates": [asdict(c) for c in candidates]})
    if not fitting:
        raise DistillError(
            f"no student shape meets the budget (speed-up >= {speedup}, params <= {max_params}); measured: "
            + ", ".join(f"{c.shape} {c.speedup:.1f}x {c.params / 1e6:.1f}M" for c in candidates)
        )
    return max(fitting, key=lambda c: c.params).shape, candidates
