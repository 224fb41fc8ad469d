"""KD losses: zero at equal logits, gradients against a float64 reference, masking, mixing."""

from __future__ import annotations

import pytest
import torch

from zhkd.distill.collate import IGNORE_INDEX
from zhkd.distill.config import LossConfig
from zhkd.distill.errors import DistillError
from zhkd.distill.losses import combine, hard_cross_entropy, kd_kl, logit_mse, loss_sums, soft_cross_entropy


def logits(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 3


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 4.0, 8.0])
def test_kd_is_zero_when_student_equals_teacher(temperature):
    teacher = logits(16, 5)
    assert torch.allclose(kd_kl(teacher.clone(), teacher, temperature), torch.zeros(16), atol=1e-6)
    assert torch.allclose(logit_mse(teacher.clone(), teacher), torch.zeros(16))
    # Soft cross-entropy keeps the teacher's entropy (times T²) as its floor.
    p = torch.softmax(teacher / temperature, -1)
    entropy = -(p * p.log()).sum(-1) * temperature**2
    assert torch.allclose(soft_cross_entropy(teacher.clone(), teacher, temperature), entropy, atol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 3.0, 6.0])
def test_kd_gradient_matches_a_float64_reference(temperature):
    student, teacher = logits(8, 4, seed=1).requires_grad_(), logits(8, 4, seed=2)
    kd_kl(student, teacher, temperature).sum().backward()
    # d/dz [T² KL(p_t || softmax(z/T))] = T (softmax(z/T) - p_t), computed in float64.
    s64, t64 = student.detach().double(), teacher.double()
    reference = temperature * (torch.softmax(s64 / temperature, -1) - torch.softmax(t64 / temperature, -1))
    assert torch.allclose(student.grad.double(), reference, atol=1e-6)
    # Soft cross-entropy differs from the KL by a constant: same gradient.
    student.grad = None
    soft_cross_entropy(student, teacher, temperature).sum().backward()
    assert torch.allclose(student.grad.double(), reference, atol=1e-6)


def test_token_level_losses_count_only_real_tokens():
    student, teacher = logits(3, 6, 4, seed=3), logits(3, 6, 4, seed=4)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    labels = torch.randint(0, 4, (3, 6), generator=torch.Generator().manual_seed(5))
    labels[1, 2] = IGNORE_INDEX
    config = LossConfig(temperature=2.0, alpha=0.5)
    sums = loss_sums(student, labels, teacher, config, mask)
    assert sums["soft_count"].item() == 10 and sums["hard_count"].item() == 9
    # Padding positions may hold anything: the sums do not move.
    noisy_student, noisy_teacher = student.clone(), teacher.clone()
    noisy_student[~mask] = 1e4
    noisy_teacher[~mask] = -1e4
    noisy = loss_sums(noisy_student, labels, noisy_teacher, config, mask)
    assert torch.allclose(noisy["soft_sum"], sums["soft_sum"]) and torch.allclose(noisy["hard_sum"], sums["hard_sum"])
    expected_soft = kd_kl(student[mask], teacher[mask], 2.0).sum()
    assert torch.allclose(sums["soft_sum"], expected_soft)


def test_alpha_mixes_soft_and_hard_over_global_counts():
    student, teacher = logits(6, 3, seed=6), logits(6, 3, seed=7)
    labels = torch.tensor([0, 1, 2, IGNORE_INDEX, 1, 0])
    config = LossConfig(temperature=4.0, alpha=0.25)
    sums = loss_sums(student, labels, teacher, config)
    counts = {"soft_count": 6.0, "hard_count": 5.0}
    soft = kd_kl(student, teacher, 4.0).mean()
    hard = hard_cross_entropy(student, labels)[labels != IGNORE_INDEX].mean()
    assert torch.allclose(combine(sums, counts, config, distilling=True), 0.75 * soft + 0.25 * hard)
    # Fine-tuning ignores any teacher and uses the gold labels alone.
    assert torch.allclose(combine(loss_sums(student, labels, None, config), counts, config, distilling=False), hard)
    # alpha = 0: pure distillation, no hard term computed.
    pure = loss_sums(student, labels, teacher, LossConfig(alpha=0.0))
    assert pure["hard_count"].item() == 0


@pytest.mark.parametrize("bad", [{"temperature": 0}, {"alpha": 1.5}, {"soft": "cosine"}])
def test_bad_loss_options_are_user_errors(bad):
    with pytest.raises(DistillError):
        LossConfig(**bad)


def test_a_registered_soft_loss_is_chosen_by_name_and_label_kind():
    from zhkd.distill import losses

    def halved_mse(student, teacher, temperature):
        return logit_mse(student, teacher) / 2

    losses.register_soft_loss("half-mse", "half the logit MSE", {"sequence": halved_mse})
    try:
        student, teacher = logits(4, 3, seed=8), logits(4, 3, seed=9)
        sums = loss_sums(student, None, teacher, LossConfig(soft="half-mse"))
        assert torch.allclose(sums["soft_sum"], logit_mse(student, teacher).sum() / 2)
        with pytest.raises(DistillError, match="not defined for multilabel"):
            loss_sums(student, None, teacher, LossConfig(soft="half-mse"), kind="multilabel")
    finally:
        losses.SOFT_LOSSES.pop("half-mse")
        losses.SOFT_SUMMARIES.pop("half-mse")
    with pytest.raises(DistillError, match="one of kl, ce, mse"):
        LossConfig(soft="half-mse")


def test_bf16_student_logits_are_upcast_and_the_teacher_is_never_rounded():
    student, teacher = logits(32, 5, seed=8).to(torch.bfloat16), logits(32, 5, seed=9)
    config = LossConfig(temperature=4.0, alpha=0.5)
    labels = torch.arange(32) % 5
    sums = loss_sums(student, labels, teacher, config)
    assert all(value.dtype == torch.float32 for value in sums.values())
    assert torch.equal(sums["soft_sum"], kd_kl(student.float(), teacher, 4.0).sum())
    # Rounding the teacher's logits to the student's dtype (what a cast would do) gives another loss.
    rounded = kd_kl(student.float(), teacher.to(torch.bfloat16).float(), 4.0).sum()
    assert not torch.allclose(sums["soft_sum"], rounded, rtol=1e-5, atol=0)


def test_combine_takes_device_counts_and_a_term_counted_nowhere_adds_nothing():
    student, teacher = logits(4, 3, seed=10).requires_grad_(), logits(4, 3, seed=11)
    config = LossConfig(temperature=2.0, alpha=0.5)
    sums = loss_sums(student, None, teacher, config)  # no gold labels: the hard term counts nothing
    counts = {"soft_count": torch.tensor(8.0), "hard_count": torch.tensor(0.0)}
    loss = combine(sums, counts, config, distilling=True)
    assert torch.allclose(loss, 0.5 * kd_kl(student, teacher, 2.0).sum() / 8)
    loss.backward()
    assert torch.isfinite(student.grad).all()
