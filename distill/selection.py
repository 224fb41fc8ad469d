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


def explain_teacher_choice(task: str, names: Sequence[str], figures: Sequence[dict], chosen: str, *,
                           tie_tolerance: float, baseline: dict | None = None, margin: float = 0.0) -> dict:
    """The choice of `select_teacher` in words: why this candidate, and whether it beats the baseline.

    `names` are the candidates' names in the order of `figures`; `baseline` (optional) is
    {"score": dev score, "source": where it came from}. A teacher beats the baseline when its dev score
    exceeds the baseline's by at least `margin` (absolute, in the units of the headline metric).
    Returns {"chosen", "strategy", "candidates", "baseline", "reasons"}: reasons are readable lines.
    """
    metric = get_task(task).headline
    rows = [{"name": name, "path": f["teacher"], "score": f["score"], "ece": f["ece"], "scores": f["scores"]}
            for name, f in zip(names, figures, strict=True)]
    pick = next(r for r in rows if r["path"] == str(chosen))
    best = max(r["score"] for r in rows)
    tied = [r for r in rows if best - r["score"] <= tie_tolerance]
    others = [r for r in rows if r is not pick]
    if len(tied) > 1:
        rivals = ", ".join(f"{r['name']} {r['ece']:.4f}" for r in tied if r is not pick)
        reasons = [f"chosen {pick['name']}: dev {metric} {pick['score']:.4f} ties with "
                   f"{', '.join(r['name'] for r in tied if r is not pick)} (within {tie_tolerance:g}); the tie goes "
                   f"to the lower expected calibration error: {pick['ece']:.4f} against {rivals}"]
    else:
        runner_up = max(others, key=lambda r: r["score"])
        reasons = [f"chosen {pick['name']}: the highest dev {metric}, {pick['score']:.4f}, "
                   f"{pick['score'] - runner_up['score']:+.4f} over the next ({runner_up['name']}, "
                   f"{runner_up['score']:.4f})"]
    against = None
    if baseline is not None:
        gap = pick["score"] - baseline["score"]
        beaten = gap >= margin
        against = {**baseline, "margin": margin, "gap": gap, "beaten": beaten}
        need = f" (at least {margin:+.4f} asked)" if margin else ""
        reasons.append(f"{pick['name']} {'beats' if beaten else 'does not beat'} the classical baseline: dev {metric} "
                       f"{pick['score']:.4f} against {baseline['score']:.4f} ({baseline['source']}), "
                       f"{gap:+.4f}{need}")
    return {"chosen": {"name": pick["name"], "path": pick["path"]},
            "strategy": f"the best dev {metric}; candidates within {tie_tolerance:g} of it are decided by the lower "
                        "expected calibration error (15 bins)",
            "metric": metric, "candidates": rows, "baseline": against, "reasons": reasons}


@dataclass(frozen=True)
class StudentCandidate:
    shape: str
    params: int
    latency_ms: float
    speedup: float
    meets: bool


def select_student(teacher, *, kind: str, num_labels: int, speedup: float | None = None,
                   max_params: int | None = None, shapes: Sequence[str] | None = None,
                   latency_ms: Callable[[object], float] | None = None, runs: int = 20, device: str | None = None,
                   log: Callable[[dict], None] = lambda event: None) -> tuple[str, list[StudentCandidate]]:
    """The most capable catalogue shape within the budget, with every candidate's measurements.

    Candidates are built at random with the teacher's vocabulary size. By default the teacher and every
    candidate are timed together, in alternation (`time_in_rounds`: median of `runs` forward passes at
    batch 1, 64 tokens, on `device`, default this machine's), so drift on a shared machine does not
    decide which shape fits; `latency_ms(model)`, when given, times one model at a time instead.
    """
    from zhkd.distill.students import build_model, parameter_count, student_names

    if speedup is None and max_params is None:
        raise DistillError("student selection needs a target speed-up or a parameter budget")
    names = list(shapes or student_names())
    models = {name: build_model(name, kind=kind, vocab_size=teacher.config.vocab_size, num_labels=num_labels)
              for name in names}
    if latency_ms is None:
        measured = _latencies_in_alternation({"teacher": teacher, **models}, runs=runs, device=device)
    else:
        measured = {name: latency_ms(model) for name, model in {"teacher": teacher, **models}.items()}
    teacher_ms = measured["teacher"]
    candidates = []
    for name in names:
        ms, params = measured[name], parameter_count(models[name])
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


def _latencies_in_alternation(models: dict, *, runs: int, device: str | None, seq_len: int = 64) -> dict[str, float]:
    """Median milliseconds at batch 1 of each model, all timed round-robin."""
    import statistics

    import torch

    from zhkd.distill.latency import forward_call, time_in_rounds

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    calls = {name: forward_call(model, seq_len=seq_len, batch_size=1, device=device) for name, model in models.items()}
    with torch.inference_mode():
        times = time_in_rounds(calls, runs=runs, warmup=3)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}
