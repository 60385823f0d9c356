"""The optimizer loop the PRM and ORM trainers share, with its config and result.

:func:`run_training` runs shuffled mini-batches through AdamW with gradient clipping and step /
epoch / time limits; :class:`RewardTrainConfig` holds those settings (the PRM's and the ORM's
configs extend it) and :class:`RewardTrainResult` reports the run.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from typing import Any

import torch

from o1search.reward.scalar_head import ScalarHeadModel

__all__ = ["RewardTrainConfig", "RewardTrainResult", "run_training"]


def _f(default: Any, help_text: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass
class RewardTrainConfig:
    """What the PRM and ORM trainers share: optimizer, run length, clipping, output.

    The run lasts ``max_steps`` optimizer steps, or else ``num_epochs`` passes over the data.
    """

    learning_rate: float = _f(1e-3, "AdamW learning rate of the backbone")
    head_learning_rate: float | None = _f(None, "learning rate of the head (None: same)")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    batch_size: int = _f(32, "examples per optimizer step")
    num_epochs: float | None = _f(None, "passes over the data when max_steps is None "
                                        "(default 3)")
    max_steps: int | None = _f(None, "optimizer steps (set this or num_epochs)")
    max_seconds: float | None = _f(None, "also stop after this much wall time")
    max_grad_norm: float | None = _f(1.0, "clip the global gradient norm; None: no clipping")
    train_backbone: bool = _f(True, "update the backbone too (False: only the head)")
    seed: int = _f(0, "data order seed")
    output_dir: str | None = _f(None, "save the model here at the end (atomically)")

    def __post_init__(self) -> None:
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.head_learning_rate is not None and not self.head_learning_rate > 0:
            raise ValueError(f"head_learning_rate must be > 0 or None, got "
                             f"{self.head_learning_rate}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_steps is not None and self.num_epochs is not None:
            raise ValueError("set max_steps or num_epochs, not both")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.num_epochs is not None and not self.num_epochs > 0:
            raise ValueError(f"num_epochs must be > 0, got {self.num_epochs}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0, got {self.max_grad_norm}; "
                             "use None for no clipping")


@dataclasses.dataclass
class RewardTrainResult:
    """What a reward-model training run did.

    Attributes
    ----------
    losses : list of float
        Loss of every optimizer step.
    steps : int
        Optimizer steps run.
    epochs : float
        Passes over the data.
    seconds : float
        Wall time.
    """

    losses: list[float]
    steps: int
    epochs: float
    seconds: float


def run_training(model: ScalarHeadModel, items: list[Any], loss_fn: Any, config: Any
                 ) -> RewardTrainResult:
    """Shared optimizer loop of :func:`~o1search.reward.prm_train.train_prm` and
    :func:`~o1search.reward.orm.train_orm`: shuffled mini-batches, AdamW, gradient clipping,
    step / epoch / time limits; the model is left in eval mode with its caches flushed."""
    if not items:
        raise ValueError("no training examples")
    head_params = list(model.head.parameters())
    groups = [{"params": head_params,
               "lr": config.head_learning_rate or config.learning_rate}]
    if config.train_backbone:
        groups.append({"params": [p for p in model.backbone.parameters() if p.requires_grad],
                       "lr": config.learning_rate})
    opt = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    per_epoch = math.ceil(len(items) / config.batch_size)
    total = (config.max_steps if config.max_steps is not None
             else max(1, math.ceil(per_epoch * (config.num_epochs or 3.0))))
    rng = random.Random(config.seed)
    order: list[int] = []
    losses: list[float] = []
    start = time.perf_counter()
    params = [p for g in groups for p in g["params"]]
    was_grad = [p.requires_grad for p in model.backbone.parameters()]
    if not config.train_backbone:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    model.backbone.train(config.train_backbone)
    used = 0
    try:
        for _ in range(total):
            if config.max_seconds is not None and time.perf_counter() - start > config.max_seconds:
                break
            batch = []
            while len(batch) < config.batch_size:
                if not order:
                    order = list(range(len(items)))
                    rng.shuffle(order)
                batch.append(items[order.pop()])
                used += 1
                if not order:
                    break  # an epoch ends with a short batch rather than mixing epochs
            loss = loss_fn(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            opt.step()
            losses.append(float(loss.detach()))
    finally:
        model.backbone.eval()
        for p, g in zip(model.backbone.parameters(), was_grad):
            p.requires_grad_(g)
        model.refresh()
    if config.output_dir is not None:
        model.save(config.output_dir)
    return RewardTrainResult(losses=losses, steps=len(losses), epochs=used / len(items),
                             seconds=time.perf_counter() - start)
