"""Configuration of GRPO / RLOO (:mod:`o1search.learn.grpo`)."""

from __future__ import annotations

import dataclasses

__all__ = ["GRPOConfig", "GRPO_LOSS_TYPES", "ADVANTAGE_ESTIMATORS"]

GRPO_LOSS_TYPES = ("grpo", "dapo", "dr_grpo")
ADVANTAGE_ESTIMATORS = ("group", "rloo")


def _f(default, help_text: str):  # noqa: ANN001, ANN202 - a dataclass field with help text
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass
class GRPOConfig:
    """Group-relative policy optimization (and RLOO) on verifier rewards.

    Each step samples ``num_generations`` completions per prompt, rewards them with the task's
    verifier, turns rewards into advantages within each group (``advantage="group"``: GRPO's
    ``(r - mean) / std``; ``"rloo"``: ``r_i - mean_{j != i} r_j``) and takes clipped policy
    gradient steps. ``loss_type`` picks the normalization: ``"grpo"`` (mean over tokens of each
    sequence, then over sequences), ``"dapo"`` (mean over all tokens of the batch), or
    ``"dr_grpo"`` (sum over tokens divided by ``rows * max_new_tokens``, a constant, and no std
    scaling of advantages, Liu et al. 2025).
    """

    num_generations: int = _f(8, "completions sampled per prompt (the group size G)")
    advantage: str = _f("group", "'group' (GRPO) or 'rloo' (leave-one-out baseline)")
    scale_rewards: bool | None = _f(
        None, "divide group advantages by the group's std; None: yes for 'grpo'/'dapo' with "
        "'group' advantages, no for 'dr_grpo' and 'rloo'")
    loss_type: str = _f("grpo", "'grpo', 'dapo' (token-level) or 'dr_grpo' (constant normaliser)")
    epsilon: float = _f(0.2, "clip range of the probability ratio (lower side)")
    epsilon_high: float | None = _f(
        None, "upper clip range ('clip-higher', DAPO uses 0.28); None: equal to epsilon")
    kl_coef: float = _f(0.0, "weight of the k3 KL estimate to a frozen reference (0: no reference)")
    num_iterations: int = _f(1, "passes (mu) over each sampled batch; >1 makes the ratio matter")
    mini_batch_size: int | None = _f(None, "rows per optimizer step; None: the whole batch")
    drop_uniform_groups: bool = _f(
        False, "skip groups whose rewards are all equal (zero advantage; DAPO dynamic sampling)")
    temperature: float = _f(1.0, "sampling temperature of the rollouts")
    top_p: float = _f(1.0, "nucleus mass of the rollouts")
    max_new_tokens: int = _f(96, "longest sampled completion in tokens")
    learning_rate: float = _f(1e-4, "AdamW learning rate (constant)")
    weight_decay: float = _f(0.0, "AdamW weight decay (matrices only)")
    max_grad_norm: float | None = _f(1.0, "clip the global gradient norm; None: no clipping")
    adv_eps: float = _f(1e-4, "added to the group std before dividing")
    seed: int = _f(0, "seed of rollouts and mini-batch order")
    progress: bool = _f(False, "show a tqdm bar over the optimizer steps of a batch")

    def __post_init__(self) -> None:
        if self.num_generations < 2:
            raise ValueError(
                f"num_generations must be >= 2 for group-relative advantages, got "
                f"{self.num_generations}; use PPO (value baseline) for one sample per prompt")
        if self.advantage not in ADVANTAGE_ESTIMATORS:
            raise ValueError(f"advantage must be one of {ADVANTAGE_ESTIMATORS}, got "
                             f"{self.advantage!r}")
        if self.loss_type not in GRPO_LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {GRPO_LOSS_TYPES}, got {self.loss_type!r}")
        if self.scale_rewards and self.loss_type == "dr_grpo":
            raise ValueError("dr_grpo removes the std normalisation: set scale_rewards=None or "
                             "False, or use loss_type='grpo'")
        if self.scale_rewards and self.advantage == "rloo":
            raise ValueError("RLOO advantages are not std-scaled: set scale_rewards=None or "
                             "False, or use advantage='group'")
        if not 0 < self.epsilon < 1:
            raise ValueError(f"epsilon must be in (0, 1), got {self.epsilon}")
        if self.epsilon_high is not None and not self.epsilon_high >= self.epsilon:
            raise ValueError(f"epsilon_high={self.epsilon_high} must be >= epsilon="
                             f"{self.epsilon} (clip-higher widens the upper side)")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")
        if self.num_iterations < 1:
            raise ValueError(f"num_iterations must be >= 1, got {self.num_iterations}")
        if self.mini_batch_size is not None and self.mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1 or None, got {self.mini_batch_size}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 for on-policy sampling, got "
                             f"{self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}")
        if not self.adv_eps > 0:
            raise ValueError(f"adv_eps must be > 0, got {self.adv_eps}")

    @property
    def scale(self) -> bool:
        """Whether group advantages are divided by the group std (``scale_rewards`` resolved)."""
        if self.scale_rewards is not None:
            return self.scale_rewards
        return self.advantage == "group" and self.loss_type != "dr_grpo"

    @property
    def clip_high(self) -> float:
        """Upper clip range (``epsilon_high`` or ``epsilon``)."""
        return self.epsilon if self.epsilon_high is None else self.epsilon_high
