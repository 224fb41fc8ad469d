"""Distillation losses, per position: rows for classification, pairs and multilabel, real tokens for NER.

Each function returns one loss per position (no reduction) so the trainer can sum over a rank's
batch and divide by the count over all ranks: the data-parallel gradient then equals the
single-process one exactly. The temperature and the weights are the trainer's options; the data
holds raw logits at T=1. Losses are computed in float32 whatever precision the forward ran in: under
bf16 autocast the student's logits are upcast, never the teacher's rounded down to bf16 (8 bits of
mantissa would move a soft target at T=4 by up to a few percent).

Losses are found by name in two tables, keyed by the task's label kind (`zhkd.tasks`): a soft loss
(`--soft-loss`) and the gold-label loss of each kind. `register_soft_loss` and `register_hard_loss`
are the one place a new loss is added; the CLI's choices and `LossConfig`'s check read the table.
torch is imported inside the functions, so the option parser can read the names cheaply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from zhkd.distill.collate import IGNORE_INDEX
from zhkd.distill.errors import DistillError
from zhkd.tasks import LABEL_KINDS, MULTILABEL, SEQUENCE, TOKEN

if TYPE_CHECKING:
    import torch

    from zhkd.distill.config import LossConfig

SoftLoss = Callable[["torch.Tensor", "torch.Tensor", float], "torch.Tensor"]  # (student, teacher, T) -> per position
HardLoss = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]  # (logits, gold) -> per position

SOFT_LOSSES: dict[str, dict[str, SoftLoss]] = {}  # name -> label kind -> function
SOFT_SUMMARIES: dict[str, str] = {}
HARD_LOSSES: dict[str, HardLoss] = {}  # label kind -> function


def register_soft_loss(name: str, summary: str, by_kind: dict[str, SoftLoss]) -> None:
    """Add a soft loss under `name` for the label kinds it is defined on."""
    unknown = set(by_kind) - set(LABEL_KINDS)
    if unknown:
        raise DistillError(f"soft loss {name}: unknown label kinds {sorted(unknown)}")
    SOFT_LOSSES[name] = dict(by_kind)
    SOFT_SUMMARIES[name] = summary


def register_hard_loss(kind: str, loss: HardLoss) -> None:
    """The gold-label loss of a label kind."""
    if kind not in LABEL_KINDS:
        raise DistillError(f"unknown label kind {kind!r}")
    HARD_LOSSES[kind] = loss


def soft_loss(name: str, kind: str) -> SoftLoss:
    if name not in SOFT_LOSSES:
        raise DistillError(f"soft loss {name!r}; one of {', '.join(SOFT_LOSSES)}")
    if kind not in SOFT_LOSSES[name]:
        raise DistillError(f"soft loss {name!r} is not defined for {kind} labels")
    return SOFT_LOSSES[name][kind]


# --- one distribution over the labels (sequence and token kinds) ---------------------------------------


def kd_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher ‖ student) of the distributions at temperature T, times T² (Hinton et al.) so the
    gradient's scale does not shrink as T grows. Zero when the logits are equal, at any T."""
    import torch.nn.functional as F

    log_p_student = F.log_softmax(student / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher / temperature, dim=-1)
    return (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1) * temperature**2


def soft_cross_entropy(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy against the teacher's distribution at T, times T²: the KL plus the teacher's
    entropy, a constant, so the same gradient with a non-zero floor."""
    import torch.nn.functional as F

    p_teacher = F.softmax(teacher / temperature, dim=-1)
    return -(p_teacher * F.log_softmax(student / temperature, dim=-1)).sum(-1) * temperature**2


def logit_mse(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean squared difference of raw logits (Ba & Caruana; Tang et al. 2019); the temperature plays no part."""
    return (student - teacher).pow(2).mean(-1)


def hard_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with gold labels; zero where the label is IGNORE_INDEX (no gold label)."""
    import torch.nn.functional as F

    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="none")


# --- independent labels (multilabel): one Bernoulli per label -------------------------------------------


def soft_bce(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per label, binary cross-entropy of the student's sigmoid(z/T) against the teacher's sigmoid(z/T),
    averaged over the labels, times T². Each label is its own two-way distribution, so this is the
    multilabel form of `soft_cross_entropy` (floor: the teacher's binary entropy)."""
    import torch.nn.functional as F

    target = (teacher / temperature).sigmoid()
    per_label = F.binary_cross_entropy_with_logits(student / temperature, target, reduction="none")
    return per_label.mean(-1) * temperature**2


def binary_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per label, KL of the teacher's Bernoulli sigmoid(z/T) from the student's, averaged over the labels,
    times T²: `soft_bce` less the teacher's entropy, so zero when the logits are equal, same gradient."""
    import torch.nn.functional as F

    t = teacher / temperature
    s = student / temperature
    p = t.sigmoid()
    # log p = logsigmoid(z), log(1 - p) = logsigmoid(-z): stable at large |z|.
    kl = p * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p) * (F.logsigmoid(-t) - F.logsigmoid(-s))
    return kl.mean(-1) * temperature**2


def hard_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits against multi-hot gold, averaged over the labels (as transformers'
    multi_label_classification loss); zero for a row without gold (its targets are IGNORE_INDEX)."""
    import torch.nn.functional as F

    labelled = targets[:, 0] != IGNORE_INDEX
    per_label = F.binary_cross_entropy_with_logits(logits, targets.clamp(min=0).to(logits.dtype), reduction="none")
    return per_label.mean(-1) * labelled


def gold_count(labels: torch.Tensor) -> torch.Tensor:
    """Positions with a gold label: rows or tokens whose label (multilabel: first target) is not IGNORE_INDEX."""
    first = labels if labels.ndim == 1 else labels[:, 0]
    return (first != IGNORE_INDEX).sum()


register_soft_loss("kl", "KL divergence at T, times T² (multilabel: per label)",
                   {SEQUENCE: kd_kl, TOKEN: kd_kl, MULTILABEL: binary_kl})
register_soft_loss("ce", "soft cross-entropy at T, times T² (multilabel: per-label binary cross-entropy)",
                   {SEQUENCE: soft_cross_entropy, TOKEN: soft_cross_entropy, MULTILABEL: soft_bce})
register_soft_loss("mse", "mean squared difference of the raw logits",
                   {SEQUENCE: logit_mse, TOKEN: logit_mse, MULTILABEL: logit_mse})
register_hard_loss(SEQUENCE, hard_cross_entropy)
register_hard_loss(TOKEN, hard_cross_entropy)
register_hard_loss(MULTILABEL, hard_bce)


def loss_sums(student: torch.Tensor, labels: torch.Tensor | None, teacher: torch.Tensor | None,
              config: LossConfig, mask: torch.Tensor | None = None, *, kind: str = SEQUENCE) -> dict[str, torch.Tensor]:
    """Summed soft and hard losses with the number of positions each sums over.

    `student`/`teacher`: [rows, labels] or [rows, tokens, labels]; `mask` ([rows, tokens]) keeps the real
    tokens; `labels`: ids ([rows] or [rows, tokens]), or multi-hot [rows, labels] for the multilabel kind.
    A term without its target (no teacher logits, no gold label) has count zero. Sums and counts are
    float32, with the student's logits upcast (bf16 under autocast) and the teacher's kept as stored.
    """
    student = student.float()
    if mask is not None:
        student = student[mask]
        teacher = None if teacher is None else teacher[mask]
        labels = None if labels is None else labels[mask]
    zero = student.new_zeros(())
    sums = {"soft_sum": zero, "soft_count": zero, "hard_sum": zero, "hard_count": zero}
    if teacher is not None and config.alpha < 1.0:
        soft = soft_loss(config.soft, kind)(student, teacher.float(), config.temperature)
        sums["soft_sum"], sums["soft_count"] = soft.sum(), student.new_tensor(float(soft.numel()))
    if labels is not None and (config.alpha > 0.0 or teacher is None):
        sums["hard_sum"] = HARD_LOSSES[kind](student, labels).sum()
        sums["hard_count"] = gold_count(labels).float()
    return sums


def _per_position(total: torch.Tensor, count: torch.Tensor | float) -> torch.Tensor:
    """`total / count`, and zero (graph kept) where nothing was counted: a term with no positions anywhere
    has a zero sum on every rank, so dividing by max(count, 1) gives it; no branch on the count's value,
    which would make the host wait for the device every step."""
    import torch

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
