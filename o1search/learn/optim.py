"""Optimisation set-up and guards of the RL / preference trainers: :func:`make_optimizer`
(AdamW decaying matrices only), :func:`frozen_copy` (the frozen reference model of a KL
penalty / DPO) and :func:`check_finite` (stop on a diverged update).

Private: users import the trainers from :mod:`o1search.learn`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["check_finite", "frozen_copy", "make_optimizer"]


def make_optimizer(params: Sequence[torch.nn.Parameter] | Any, *, lr: float,
                   weight_decay: float, betas: tuple[float, float] = (0.9, 0.95),
                   eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (norms and biases are not decayed)."""
    decay, no_decay = [], []
    for p in params:
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay},
         {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=betas, eps=eps)


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``model`` in eval mode with ``requires_grad=False`` everywhere (the
    frozen reference of a KL penalty / DPO)."""
    ref = copy.deepcopy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def check_finite(x: float, what: str) -> float:
    """``x`` when finite; a ValueError naming ``what`` otherwise (a diverged update)."""
    if not math.isfinite(x):
        raise ValueError(f"{what} is {x}: the update diverged (lower the learning rate)")
    return x
