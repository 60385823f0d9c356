"""Configuration of step-level DPO (:mod:`o1search.learn.dpo`)."""

from __future__ import annotations

import dataclasses

__all__ = ["DPOConfig", "DPO_LOSS_TYPES", "PAIR_MODES"]

DPO_LOSS_TYPES = ("sigmoid", "ipo")
PAIR_MODES = ("best_worst", "all")


def _f(default, help_text: str):  # noqa: ANN001, ANN202 - a dataclass field with help text
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass
class DPOConfig:
    """Direct preference optimization on (prefix, chosen step, rejected step) pairs taken from
    search trees: sibling steps whose values differ by at least ``min_margin``."""

    beta: float = _f(0.1, "strength of the implicit KL to the reference")
    loss_type: str = _f("sigmoid", "'sigmoid' (DPO) or 'ipo' (squared loss, Azar et al.)")
    label_smoothing: float = _f(0.0, "conservative DPO: assumed rate of flipped labels "
                                     "(sigmoid loss only)")
    min_margin: float = _f(0.2, "least value gap between siblings to form a pair")
    min_visits: int = _f(1, "siblings need at least this many visits to be compared")
    pairs: str = _f("best_worst", "per parent: 'best_worst' (one pair) or 'all' pairs with margin")
    learning_rate: float = _f(1e-4, "AdamW learning rate (constant)")
    weight_decay: float = _f(0.0, "AdamW weight decay (matrices only)")
    batch_size: int = _f(16, "pairs per optimizer step")
    num_epochs: int = _f(1, "passes over the pairs")
    max_grad_norm: float | None = _f(1.0, "clip the global gradient norm; None: no clipping")
    seed: int = _f(0, "seed of the pair order")
    progress: bool = _f(False, "show a tqdm bar")

    def __post_init__(self) -> None:
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if self.loss_type not in DPO_LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {DPO_LOSS_TYPES}, got {self.loss_type!r}")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.label_smoothing and self.loss_type == "ipo":
            raise ValueError("label_smoothing applies to the sigmoid loss; set it to 0 for IPO")
        if self.min_margin < 0:
            raise ValueError(f"min_margin must be >= 0, got {self.min_margin}")
        if self.min_visits < 0:
            raise ValueError(f"min_visits must be >= 0, got {self.min_visits}")
        if self.pairs not in PAIR_MODES:
            raise ValueError(f"pairs must be one of {PAIR_MODES}, got {self.pairs!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.batch_size < 1 or self.num_epochs < 1:
            raise ValueError("batch_size and num_epochs must be >= 1")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}")
