"""Configuration of PPO (:mod:`o1search.learn.ppo`)."""

from __future__ import annotations

import dataclasses

__all__ = ["PPOConfig", "REWARD_MODES"]

REWARD_MODES = ("outcome", "dense")


def _f(default, help_text: str):  # noqa: ANN001, ANN202 - a dataclass field with help text
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass
class PPOConfig:
    """PPO with a value head (critic), GAE, the clipped ratio and a KL penalty to a frozen
    reference, on outcome rewards or dense per-step rewards (PRM / shaping).

    Token ``t`` of a completion is action ``t``. Its reward is ``-kl_coef * (logp_t -
    ref_t)``, plus the outcome reward on the last token (``reward_mode="outcome"``) or the
    step rewards of a ``step_rewards`` function on the last token of each step
    (``reward_mode="dense"``).
    """

    num_samples: int = _f(4, "completions sampled per prompt")
    temperature: float = _f(1.0, "sampling temperature of the rollouts")
    max_new_tokens: int = _f(96, "longest sampled completion in tokens")
    gamma: float = _f(1.0, "discount per token")
    lam: float = _f(0.95, "GAE lambda")
    clip_eps: float = _f(0.2, "clip range of the probability ratio")
    value_clip: float | None = _f(0.2, "clip range of the value update; None: unclipped")
    vf_coef: float = _f(0.5, "weight of the value loss")
    kl_coef: float = _f(0.05, "KL penalty per token to the frozen reference (0: none)")
    reward_mode: str = _f("outcome", "'outcome' (verifier at the end) or 'dense' (step rewards)")
    whiten_advantages: bool = _f(True, "normalise advantages over the batch")
    ppo_epochs: int = _f(2, "passes over each sampled batch")
    mini_batch_size: int | None = _f(None, "rows per optimizer step; None: the whole batch")
    learning_rate: float = _f(1e-4, "AdamW learning rate of the policy")
    value_learning_rate: float = _f(1e-3, "AdamW learning rate of the value head")
    weight_decay: float = _f(0.0, "AdamW weight decay (matrices only)")
    max_grad_norm: float | None = _f(1.0, "clip the global gradient norm; None: no clipping")
    step_delimiter: str = _f("\n", "ends a reasoning step (where dense rewards are placed)")
    seed: int = _f(0, "seed of rollouts and mini-batch order")

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 for on-policy sampling, got "
                             f"{self.temperature}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0 <= self.gamma <= 1 or not 0 <= self.lam <= 1:
            raise ValueError(f"gamma and lam must be in [0, 1], got {self.gamma}, {self.lam}")
        if not 0 < self.clip_eps < 1:
            raise ValueError(f"clip_eps must be in (0, 1), got {self.clip_eps}")
        if self.value_clip is not None and not self.value_clip > 0:
            raise ValueError(f"value_clip must be > 0, or None for no clipping; got "
                             f"{self.value_clip}")
        if self.vf_coef < 0 or self.kl_coef < 0:
            raise ValueError("vf_coef and kl_coef must be >= 0")
        if self.reward_mode not in REWARD_MODES:
            raise ValueError(f"reward_mode must be one of {REWARD_MODES}, got "
                             f"{self.reward_mode!r}")
        if self.ppo_epochs < 1:
            raise ValueError(f"ppo_epochs must be >= 1, got {self.ppo_epochs}")
        if self.mini_batch_size is not None and self.mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1 or None, got {self.mini_batch_size}")
        if self.whiten_advantages and self.num_samples == 1 and self.mini_batch_size == 1:
            raise ValueError("whitening advantages of a single row gives 0: set "
                             "whiten_advantages=False or a larger batch")
        if not (self.learning_rate > 0 and self.value_learning_rate > 0):
            raise ValueError("learning_rate and value_learning_rate must be > 0")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}")
        if not self.step_delimiter:
            raise ValueError("step_delimiter must be a non-empty string")
