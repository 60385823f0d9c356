"""GRPO and RLOO: policy gradients with group baselines on verifier rewards.

Per prompt, ``G`` completions are sampled (through :class:`o1search.engine.Engine`) and
rewarded by the task's verifier; the baseline of a completion is the other completions of its
group, so no value model is needed. The loss is the clipped surrogate of PPO per token,

    ratio_t = exp(logp_t - logp_old_t)
    loss_t  = -min(ratio_t * A, clip(ratio_t, 1 - eps, 1 + eps_high) * A) + beta * k3_t

with ``k3_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1`` (an unbiased, non-negative KL
estimate) when a frozen reference is used, reduced per ``loss_type`` (see
:class:`GRPOConfig`). After the update the engine gets the new weights
(``engine.load_weights``), which also flushes its KV cache.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from o1search.learn.grpo_config import GRPO_LOSS_TYPES, GRPOConfig
from o1search.learn.optim import check_finite, frozen_copy, make_optimizer
from o1search.learn.rollouts import engine_for, sample_rollouts
from o1search.learn.token_batches import pad_completions, shuffled_minibatches, token_logprobs

__all__ = [
    "GRPOTrainer",
    "clipped_policy_loss",
    "group_advantages",
    "k3_kl",
    "rloo_advantages",
]


def _as_groups(rewards: Any) -> torch.Tensor:
    r = torch.as_tensor(rewards, dtype=torch.float64)
    if r.ndim != 2 or r.shape[1] < 2:
        raise ValueError(f"rewards must be [B, G] with G >= 2, got shape {tuple(r.shape)}")
    if not torch.isfinite(r).all():
        raise ValueError("rewards must be finite")
    return r


def group_advantages(rewards: Any, *, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """GRPO advantages: each reward minus its group's mean, optionally over its group's std.

    Parameters:
        rewards: ``[B, G]`` rewards, ``G >= 2`` completions per prompt.
        scale: divide by the group's (unbiased) standard deviation plus ``eps``.
        eps: keeps a group of equal rewards at advantage 0 instead of 0/0.

    Returns:
        ``[B, G]`` float64 advantages.

    Raises:
        ValueError: not ``[B, G]`` with ``G >= 2``, or non-finite rewards.
    """
    r = _as_groups(rewards)
    adv = r - r.mean(dim=1, keepdim=True)
    if scale:
        adv = adv / (r.std(dim=1, keepdim=True) + eps)
    return adv


def rloo_advantages(rewards: Any) -> torch.Tensor:
    """REINFORCE leave-one-out advantages: ``r_i - mean_{j != i} r_j`` within each group.

    Parameters:
        rewards: ``[B, G]`` rewards, ``G >= 2``.

    Returns:
        ``[B, G]`` float64 advantages (``G / (G - 1)`` times the mean-centred rewards).

    Raises:
        ValueError: not ``[B, G]`` with ``G >= 2``, or non-finite rewards.
    """
    r = _as_groups(rewards)
    g = r.shape[1]
    baseline = (r.sum(dim=1, keepdim=True) - r) / (g - 1)
    return r - baseline


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token ``exp(ref - logp) - (ref - logp) - 1`` (Schulman's k3 KL estimate, >= 0,
    exactly 0 where the policy equals the reference)."""
    d = ref_logprobs - logprobs
    return torch.exp(d) - d - 1


def clipped_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    loss_type: str = "grpo",
    max_len: int | None = None,
    ref_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped surrogate loss, reduced as GRPO, DAPO or Dr. GRPO.

    Parameters:
        logprobs: ``[N, T]`` log-probabilities of the sampled tokens under the current
            policy (with gradients).
        old_logprobs: ``[N, T]`` the same under the policy that sampled them (no gradient).
        advantages: ``[N]`` (one per sequence) or ``[N, T]`` (per token).
        mask: ``[N, T]``, 1 on completion tokens.
        epsilon, epsilon_high: clip range ``[1 - epsilon, 1 + epsilon_high]``
            (``epsilon_high`` None: ``epsilon``).
        loss_type: ``"grpo"`` (per-sequence token mean, then mean over sequences), ``"dapo"``
            (mean over all tokens), ``"dr_grpo"`` (token sum / ``(N * max_len)``), or
            ``"token_mean"`` (an alias of ``"dapo"``, what PPO uses).
        max_len: the constant normaliser of ``"dr_grpo"`` (the generation limit).
        ref_logprobs: ``[N, T]`` frozen reference log-probabilities for the KL term.
        kl_coef: weight of the k3 KL term (needs ``ref_logprobs`` when > 0).

    Returns:
        ``(loss, stats)``: a scalar tensor and floats ``clip_frac``, ``ratio_mean``, ``kl``.

    Raises:
        ValueError: shapes that disagree, an unknown ``loss_type``, ``dr_grpo`` without
            ``max_len``, or ``kl_coef > 0`` without reference log-probabilities.
    """
    if logprobs.shape != old_logprobs.shape or logprobs.shape != mask.shape:
        raise ValueError(f"logprobs {tuple(logprobs.shape)}, old_logprobs "
                         f"{tuple(old_logprobs.shape)} and mask {tuple(mask.shape)} must match")
    if loss_type not in GRPO_LOSS_TYPES + ("token_mean",):
        raise ValueError(f"loss_type must be one of {GRPO_LOSS_TYPES + ('token_mean',)}, got "
                         f"{loss_type!r}")
    if advantages.ndim == 1:
        if advantages.shape[0] != logprobs.shape[0]:
            raise ValueError(f"{advantages.shape[0]} advantages for {logprobs.shape[0]} rows")
        adv = advantages.to(logprobs.dtype).unsqueeze(1)
    elif advantages.shape == logprobs.shape:
        adv = advantages.to(logprobs.dtype)
    else:
        raise ValueError(f"advantages must be [N] or [N, T], got {tuple(advantages.shape)}")
    hi = epsilon if epsilon_high is None else epsilon_high
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs)
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + hi)
    per_token = -torch.minimum(ratio * adv, clipped * adv)
    kl_val = 0.0
    if kl_coef > 0:
        if ref_logprobs is None:
            raise ValueError("kl_coef > 0 needs ref_logprobs (a frozen reference)")
        kl = k3_kl(logprobs, ref_logprobs)
        per_token = per_token + kl_coef * kl
        kl_val = float(((kl * mask).sum() / mask.sum().clamp(min=1)).detach())
    elif ref_logprobs is not None:
        kl_val = float(((k3_kl(logprobs, ref_logprobs) * mask).sum()
                        / mask.sum().clamp(min=1)).detach())
    if loss_type == "grpo":
        loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
    elif loss_type in ("dapo", "token_mean"):
        loss = (per_token * mask).sum() / mask.sum().clamp(min=1)
    else:
        if max_len is None or max_len < 1:
            raise ValueError("loss_type='dr_grpo' needs max_len (the generation token limit)")
        loss = (per_token * mask).sum() / (mask.shape[0] * max_len)
    with torch.no_grad():
        n = mask.sum().clamp(min=1)
        is_clipped = ((ratio < 1 - epsilon) & (adv < 0)) | ((ratio > 1 + hi) & (adv > 0))
        stats = {
            "clip_frac": float((is_clipped.to(mask.dtype) * mask).sum() / n),
            "ratio_mean": float((ratio * mask).sum() / n),
            "kl": kl_val,
        }
    return loss, stats


RewardFn = Callable[[Any, str], float]


class GRPOTrainer:
    """GRPO / RLOO on a task's verifier rewards.

    Parameters:
        model: the policy, a ``transformers`` causal LM (trained in place).
        tokenizer: its tokenizer.
        task: an :class:`o1search.tasks.Task` (``prompt`` and ``verify``), or None when a
            ``reward_fn`` and prompt texts are given.
        config: a :class:`GRPOConfig`.
        engine: the :class:`o1search.engine.Engine` that samples rollouts; default: one over a
            copy of ``model``. It receives the new weights after every step.
        reward_fn: ``reward_fn(problem, completion_text) -> float`` (default ``task.verify``).

    Raises:
        TypeError: ``config`` is not a GRPOConfig.
        ValueError: neither a task nor a reward_fn.
    """

    def __init__(self, model: Any, tokenizer: Any, task: Any = None,
                 config: GRPOConfig | None = None, *, engine: Any = None,
                 reward_fn: RewardFn | None = None) -> None:
        config = GRPOConfig() if config is None else config
        if not isinstance(config, GRPOConfig):
            raise TypeError(f"config must be a GRPOConfig, got {type(config).__name__}")
        if task is None and reward_fn is None:
            raise ValueError("give a task (its verifier rewards) or a reward_fn")
        self.model = model
        self.tokenizer = tokenizer
        self.task = task
        self.config = config
        self.reward_fn = reward_fn if reward_fn is not None else task.verify
        self.engine = engine if engine is not None else engine_for(model, tokenizer)
        self.reference = frozen_copy(model) if config.kl_coef > 0 else None
        self.optimizer = make_optimizer(model.parameters(), lr=config.learning_rate,
                                        weight_decay=config.weight_decay)
        self.steps = 0  # sampled batches trained on (seeds the next batch)

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Optimizer and step counter (the model's weights are saved by the caller)."""
        state = {"optimizer": self.optimizer.state_dict(), "steps": self.steps}
        if self.reference is not None:  # the reference is the policy as it was at the start
            state["reference"] = self.reference.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`, then give the engine the model's current weights."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])
        if self.reference is not None and "reference" in state:
            self.reference.load_state_dict(state["reference"])
        self.engine.load_weights(self.model)

    # -- one step --------------------------------------------------------------------------
    def _prompt_ids(self, problems: Sequence[Any]) -> list[list[int]]:
        from o1search.policy import encode_prompt

        texts = [p if isinstance(p, str) else self.task.prompt(p) for p in problems]
        return [encode_prompt(self.tokenizer, t) for t in texts]

    def step(self, problems: Sequence[Any]) -> dict[str, float]:
        """Sample, reward, and update on one batch of problems.

        Parameters:
            problems: ``B`` task problems (or prompt texts with a ``reward_fn``).

        Returns:
            Metrics: ``reward_mean``, ``solved_frac`` (groups with a reward > 0.5),
            ``loss``, ``clip_frac``, ``kl``, ``generated_tokens``, ``rows_trained``,
            ``optimizer_steps``, ``seconds``.

        Raises:
            ValueError: no problems, or a diverged update.
        """
        if len(problems) == 0:
            raise ValueError("step needs at least one problem")
        cfg, model = self.config, self.model
        start = time.perf_counter()
        from o1search.search import derive_seed

        prompts = self._prompt_ids(problems)
        self.engine.flush_cache()
        roll = sample_rollouts(self.engine, prompts, num_samples=cfg.num_generations,
                               max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                               top_p=cfg.top_p, seed=derive_seed(cfg.seed, "grpo", self.steps))
        texts = [self.tokenizer.decode(list(c), skip_special_tokens=True)
                 for c in roll.completions]
        rewards = torch.tensor([float(self.reward_fn(problems[g], t))
                                for g, t in zip(roll.group, texts)], dtype=torch.float64)
        groups = rewards.view(len(problems), cfg.num_generations)
        if cfg.advantage == "rloo":
            adv = rloo_advantages(groups)
        else:
            adv = group_advantages(groups, scale=cfg.scale, eps=cfg.adv_eps)
        adv = adv.reshape(-1)
        rows = list(range(len(rewards)))
        if cfg.drop_uniform_groups:
            keep = (groups.max(1).values > groups.min(1).values)
            rows = [i for i in rows if bool(keep[roll.group[i]])]
        metrics: dict[str, float] = {
            "reward_mean": float(rewards.mean()),
            "solved_frac": float((groups.max(1).values > 0.5).double().mean()),
            "generated_tokens": float(roll.generated_tokens),
            "rows_trained": float(len(rows)),
        }
        losses, clip, kls, opt_steps = [], [], [], 0
        if rows:
            pad = self.tokenizer.pad_token_id or 0
            batch = pad_completions([roll.prompts[i] for i in rows],
                                    [roll.completions[i] for i in rows], pad_id=pad)
            device = next(model.parameters()).device
            batch = batch.to(device)
            adv_rows = adv[rows].to(device=device, dtype=torch.float32)
            with torch.no_grad():
                model.eval()
                old_lp, _ = token_logprobs(model, batch)
                ref_lp = token_logprobs(self.reference, batch)[0] if self.reference else None
            mb = cfg.mini_batch_size or len(rows)
            order_rng = random.Random(derive_seed(cfg.seed, "grpo-order", self.steps))
            model.train()
            try:
                for idx, sub in shuffled_minibatches(batch, mb, cfg.num_iterations, order_rng):
                    lp, _ = token_logprobs(model, sub)
                    loss, st = clipped_policy_loss(
                        lp, old_lp[idx], adv_rows[idx], sub.completion_mask,
                        epsilon=cfg.epsilon, epsilon_high=cfg.epsilon_high,
                        loss_type=cfg.loss_type, max_len=cfg.max_new_tokens,
                        ref_logprobs=None if ref_lp is None else ref_lp[idx],
                        kl_coef=cfg.kl_coef)
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.max_grad_norm is not None:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    self.optimizer.step()
                    losses.append(check_finite(float(loss.detach()), "the GRPO loss"))
                    clip.append(st["clip_frac"])
                    kls.append(st["kl"])
                    opt_steps += 1
            finally:
                model.eval()
            self.engine.load_weights(model)
        self.steps += 1
        metrics.update({
            "loss": sum(losses) / len(losses) if losses else 0.0,
            "clip_frac": sum(clip) / len(clip) if clip else 0.0,
            "kl": sum(kls) / len(kls) if kls else 0.0,
            "optimizer_steps": float(opt_steps),
            "seconds": time.perf_counter() - start,
        })
        return metrics
