"""Distillation losses, per position: rows for classification and pairs, real tokens for NER.

Each function returns one loss per position (no reduction) so the trainer can sum over a rank's
batch and divide by the count over all ranks: the data-parallel gradient then equals the
single-process one exactly. The temperature and the weights are the trainer's options; the data
holds raw logits at T=1. Losses are computed in float32 whatever precision the forward ran in: under
bf16 autocast the student's logits are upcast, never the teacher's rounded down to bf16 (8 bits of
mantissa would move a soft target at T=4 by up to a few percent).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zhkd.distill.collate import IGNORE_INDEX
from zhkd.distill.config import LossConfig


def kd_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher ‖ student) of the distributions at temperature T, times T² (Hinton et al.) so the
    gradient's scale does not shrink as T grows. Zero when the logits are equal, at any T."""
    log_p_student = F.log_softmax(student / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher / temperature, dim=-1)
    return (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1) * temperature**2


def soft_cross_entropy(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy against the teacher's distribution at T, times T²: the KL plus the teacher's
    entropy, a constant, so the same gradient with a non-zero floor."""
    p_teacher = F.softmax(teacher / temperature, dim=-1)
    return -(p_teacher * F.log_softmax(student / temperature, dim=-1)).sum(-1) * temperature**2


def logit_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of raw logits (Ba & Caruana; Tang et al. 2019)."""
    return (student - teacher).pow(2).mean(-1)


def hard_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with gold labels; zero where the label is IGNORE_INDEX (no gold label)."""
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="none")


def loss_sums(student: torch.Tensor, labels: torch.Tensor | None, teacher: torch.Tensor | None,
              config: LossConfig, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Summed soft and hard losses with the number of positions each sums over.

    `student`/`teacher`: [rows, labels] or [rows, tokens, labels]; `mask` ([rows, tokens]) keeps the real
    tokens. A term without its target (no teacher logits, no gold label) has count zero. Sums and counts
    are float32, with the student's logits upcast (bf16 under autocast) and the teacher's kept as stored.
    """
    student = student.float()
    if mask is not None:
        student = student[mask]
        teacher = None if teacher is None else teacher[mask]
        labels = None if labels is None else labels[mask]
    zero = student.new_zeros(())
    sums = {"soft_sum": zero, "soft_count": zero, "hard_sum": zero, "hard_count": zero}
    if teacher is not None and config.alpha < 1.0:
        teacher = teacher.float()
        if config.soft == "kl":
            soft = kd_kl(student, teacher, config.temperature)
        elif config.soft == "ce":
            soft = soft_cross_entropy(student, teacher, config.temperature)
        else:
            soft = logit_mse(student, teacher)
        sums["soft_sum"], sums["soft_count"] = soft.sum(), student.new_tensor(float(soft.numel()))
    if labels is not None and (config.alpha > 0.0 or teacher is None):
        hard = hard_cross_entropy(student, labels)
        sums["hard_sum"] = hard.sum()
        sums["hard_count"] = (labels != IGNORE_INDEX).sum().float()
    return sums


def _per_position(total: torch.Tensor, count: torch.Tensor | float) -> torch.Tensor:
    """`total / count`, and zero (graph kept) where nothing was counted: a term with no positions anywhere
    has a zero sum on every rank, so dividing by max(count, 1) gives it; no branch on the count's value,
    which would make the host wait for the device every step."""
    return total / torch.as_tensor(count, dtype=total.dtype, device=total.device).clamp(min=1)


def combine(sums: dict[str, torch.Tensor], counts: dict[str, torch.Tensor | float], config: LossConfig,
            *, distilling: bool) -> torch.Tensor:
    """The loss to back-propagate: each term's sum over the global count of its positions.

    `counts` are the totals over all ranks (0-d tensors on the device, or numbers); a term with no
    positions anywhere contributes nothing. Fine-tuning (`distilling=False`) uses the hard term alone.
    """
    soft = _per_position(sums["soft_sum"], counts["soft_count"])
    hard = _per_position(sums["hard_sum"], counts["hard_count"])
    if not distilling:
        return hard
    return (1.0 - config.alpha) * soft + config.alpha * hard
