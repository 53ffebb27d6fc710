"""Temporal distillation: the highest frame count teaches the lower ones.

    loss = CE(out_high, y) + lambda_kl * sum_s KL(p_high || p_s)

with p = softmax(logits). The teacher (highest frame count) is detached inside the KL terms,
so its logits learn from the labels only and the students are pulled toward the teacher,
never the other way round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PolySpaceError


@dataclass
class LossParts:
    """The total loss (for backward) and its terms; `kl` is the unweighted sum over students."""

    loss: torch.Tensor
    ce: torch.Tensor
    kl: torch.Tensor


def kl_teacher_student(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """KL(p_teacher || p_student) averaged over the batch; the teacher is detached.

    = mean_b sum_k p_t[b,k] * (log p_t[b,k] - log p_s[b,k]). Gradient flows to the student only.
    """
    log_p_teacher = F.log_softmax(teacher_logits.detach().float(), dim=-1)
    log_p_student = F.log_softmax(student_logits.float(), dim=-1)
    # F.kl_div(input, target) computes KL(target || input) with input given as log-probabilities
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)


class TemporalDistillationLoss(nn.Module):
    """CE on the teacher stream + lambda_kl * KL(teacher || student) for every other stream.

    forward(logits, labels): `logits` is a sequence ordered by frame count, lowest first
    (out_4, out_8, out_16); the last one is the teacher. Returns LossParts.
    """

    def __init__(self, lambda_kl: float = 1.0):
        super().__init__()
        if lambda_kl < 0:
            raise PolySpaceError(f"--lambda_kl must be >= 0, got {lambda_kl}")
        self.lambda_kl = float(lambda_kl)

    def forward(self, logits: Sequence[torch.Tensor], labels: torch.Tensor) -> LossParts:
        if len(logits) < 1:
            raise PolySpaceError("TemporalDistillationLoss: needs the logits of at least one stream")
        *students, teacher = logits
        ce = F.cross_entropy(teacher.float(), labels)
        kl = sum((kl_teacher_student(teacher, s) for s in students), start=teacher.new_zeros((), dtype=torch.float32))
        return LossParts(loss=ce + self.lambda_kl * kl, ce=ce, kl=kl)
