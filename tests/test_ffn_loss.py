"""Temporal distillation loss: KL direction, teacher detachment, CE/KL split."""

import pytest
import torch
import torch.nn.functional as F

from polyspace_core.errors import PolySpaceError
from polyspace_core.ffn.loss import TemporalDistillationLoss, kl_teacher_student


def _logits(seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(6, 5, generator=g).mul(2).requires_grad_() for _ in range(3)]


def test_kl_is_teacher_to_student_direction():
    out_4, _, out_16 = _logits(0)
    p16, p4 = F.softmax(out_16, -1), F.softmax(out_4, -1)
    forward = (p16 * (p16.log() - p4.log())).sum(-1).mean()   # KL(p_16 || p_4)
    reverse = (p4 * (p4.log() - p16.log())).sum(-1).mean()    # KL(p_4 || p_16)
    kl = kl_teacher_student(out_16, out_4)
    assert torch.allclose(kl, forward, atol=1e-6)
    assert not torch.allclose(kl, reverse, atol=1e-3)


def test_loss_is_ce_on_teacher_plus_weighted_kl_of_both_students():
    out_4, out_8, out_16 = _logits(1)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    parts = TemporalDistillationLoss(lambda_kl=0.7)([out_4, out_8, out_16], labels)
    ce = F.cross_entropy(out_16, labels)
    kl = kl_teacher_student(out_16, out_4) + kl_teacher_student(out_16, out_8)
    assert torch.allclose(parts.ce, ce) and torch.allclose(parts.kl, kl)
    assert torch.allclose(parts.loss, ce + 0.7 * kl)


def test_no_gradient_reaches_the_teacher_through_the_kl_term():
    out_4, out_8, out_16 = _logits(2)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    parts = TemporalDistillationLoss(lambda_kl=1.0)([out_4, out_8, out_16], labels)
    parts.kl.backward(retain_graph=True)
    assert out_16.grad is None or out_16.grad.abs().sum() == 0
    assert out_4.grad.abs().sum() > 0 and out_8.grad.abs().sum() > 0
    for t in (out_4, out_8, out_16):
        t.grad = None
    parts.ce.backward()
    assert out_16.grad.abs().sum() > 0
    assert out_4.grad is None and out_8.grad is None


def test_students_move_toward_the_teacher():
    out_4, _, out_16 = _logits(3)
    before = kl_teacher_student(out_16, out_4)
    before.backward()
    with torch.no_grad():
        stepped = out_4 - 1.0 * out_4.grad
    assert kl_teacher_student(out_16, stepped) < before


def test_negative_lambda_is_an_error():
    with pytest.raises(PolySpaceError, match="lambda_kl"):
        TemporalDistillationLoss(lambda_kl=-1)
