"""PPO for reasoning: a value head on the policy's last hidden state, GAE over tokens, the
clipped ratio, a per-token KL penalty to a frozen reference, and outcome or dense per-step
rewards (a PRM / potential-based shaping through ``step_rewards``).

The critic shares the policy's trunk (as in most RLHF implementations): the value head reads
the final hidden state at the position that predicts each token, i.e. ``V(s_t)`` for the
state before action ``t``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from o1search.learn.grpo import clipped_policy_loss
from o1search.learn.optim import check_finite, frozen_copy
from o1search.learn.ppo_config import PPOConfig
from o1search.learn.rollouts import engine_for, sample_rollouts
from o1search.learn.token_batches import (
    masked_mean,
    masked_whiten,
    pad_completions,
    shuffled_minibatches,
    token_logprobs,
)

__all__ = ["PPOTrainer", "ValueHead", "compute_gae", "token_rewards", "value_loss"]


class ValueHead(torch.nn.Module):
    """A scalar value per position: ``Linear(hidden_size, 1)`` on the last hidden state.

    Parameters:
        hidden_size: the policy's hidden size.
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        if hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {hidden_size}")
        self.linear = torch.nn.Linear(hidden_size, 1)
        # Start near V = 0 so early advantages are the rewards themselves.
        torch.nn.init.normal_(self.linear.weight, std=1e-3)
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[N, T, H]`` hidden states → ``[N, T]`` values."""
        return self.linear(hidden.float()).squeeze(-1)


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *,
                gamma: float = 1.0, lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over right-padded token sequences.

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` (``V`` after the last token is 0: the episode
    ends), ``A_t = delta_t + gamma * lam * A_{t+1}``, returns ``A_t + V_t``.

    Parameters:
        rewards: ``[N, T]`` per-token rewards.
        values: ``[N, T]`` values ``V(s_t)``.
        mask: ``[N, T]``, 1 on real tokens (a prefix of each row).
        gamma, lam: discount and GAE lambda in ``[0, 1]``.

    Returns:
        ``(advantages [N, T], returns [N, T])``, 0 where the mask is 0.

    Raises:
        ValueError: shapes differ or gamma/lam outside [0, 1].
    """
    if rewards.shape != values.shape or rewards.shape != mask.shape or rewards.ndim != 2:
        raise ValueError(f"rewards {tuple(rewards.shape)}, values {tuple(values.shape)} and "
                         f"mask {tuple(mask.shape)} must be equal [N, T] shapes")
    if not (0 <= gamma <= 1 and 0 <= lam <= 1):
        raise ValueError(f"gamma and lam must be in [0, 1], got {gamma}, {lam}")
    mask = mask.to(values.dtype)
    values = values * mask
    n, t_len = rewards.shape
    adv = torch.zeros_like(values)
    last = torch.zeros(n, dtype=values.dtype, device=values.device)
    for t in reversed(range(t_len)):
        nxt = values[:, t + 1] if t + 1 < t_len else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * nxt - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        adv[:, t] = last
    return adv, (adv + values) * mask


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               mask: torch.Tensor, *, clip: float | None = 0.2) -> torch.Tensor:
    """``0.5 * mean(max((V - R)^2, (V_clipped - R)^2))`` over masked tokens, with
    ``V_clipped = old + clamp(V - old, -clip, clip)`` (plain MSE when ``clip`` is None)."""
    err = (values - returns) ** 2
    if clip is not None:
        vc = old_values + torch.clamp(values - old_values, -clip, clip)
        err = torch.maximum(err, (vc - returns) ** 2)
    return 0.5 * masked_mean(err, mask.to(err.dtype))


def token_rewards(mask: torch.Tensor, *, outcomes: Sequence[float] | None = None,
                  step_positions: Sequence[Sequence[int]] | None = None,
                  step_rewards: Sequence[Sequence[float]] | None = None,
                  kl: torch.Tensor | None = None, kl_coef: float = 0.0) -> torch.Tensor:
    """Per-token rewards: ``-kl_coef * kl_t`` plus outcome rewards on each row's last token
    and/or step rewards on each step's last token.

    Parameters:
        mask: ``[N, T]`` completion mask.
        outcomes: ``N`` outcome rewards, put on the last real token of each row.
        step_positions: per row, the completion positions of step ends (``< len``).
        step_rewards: per row, one reward per step position.
        kl: ``[N, T]`` per-token ``logp - ref`` (k1 estimate) for the penalty.
        kl_coef: penalty weight.

    Returns:
        ``[N, T]`` float32 rewards (0 on padding).

    Raises:
        ValueError: counts that disagree, or a position outside its row.
    """
    n = mask.shape[0]
    r = torch.zeros(mask.shape, dtype=torch.float32)
    lengths = mask.sum(1).long().tolist()
    if outcomes is not None:
        if len(outcomes) != n:
            raise ValueError(f"{len(outcomes)} outcomes for {n} rows")
        for i, o in enumerate(outcomes):
            r[i, lengths[i] - 1] += float(o)
    if step_rewards is not None:
        if step_positions is None or len(step_positions) != n or len(step_rewards) != n:
            raise ValueError("step_rewards needs step_positions, one list of each per row")
        for i, (pos, rew) in enumerate(zip(step_positions, step_rewards)):
            rew = list(np.asarray(rew, dtype=np.float64).reshape(-1))
            if len(pos) != len(rew):
                raise ValueError(f"row {i}: {len(rew)} step rewards for {len(pos)} steps")
            for p, v in zip(pos, rew):
                if not 0 <= p < lengths[i]:
                    raise ValueError(f"row {i}: step end {p} outside its {lengths[i]} tokens")
                r[i, p] += float(v)
    if kl is not None and kl_coef > 0:
        r = r - kl_coef * kl.detach().float().cpu()
    return r * mask.float().cpu()


StepRewardFn = Callable[[list[tuple[int, ...]], list[tuple[int, ...]], list[float]],
                        Sequence[Sequence[float]]]


class PPOTrainer:
    """PPO with a value head, GAE, clipped ratio and a KL penalty to a frozen reference.

    Parameters:
        model: the policy (trained in place).
        tokenizer: its tokenizer.
        task: gives ``prompt`` and ``verify`` (the outcome reward).
        config: a :class:`PPOConfig`.
        engine: samples rollouts (default: an Engine over a copy of ``model``); gets the new
            weights after every step.
        step_rewards: for ``reward_mode="dense"``:
            ``step_rewards(prompts, completions, outcomes) -> per row, one reward per step``,
            e.g. ``functools.partial(o1search.reward.dense_step_rewards, prm)``. Steps end at
            ``config.step_delimiter`` (see :func:`o1search.reward.step_end_positions`); the
            outcome is not added again (shaped rewards already hold it).

    Raises:
        TypeError: ``config`` is not a PPOConfig.
        ValueError: ``reward_mode="dense"`` without ``step_rewards``.
    """

    def __init__(self, model: Any, tokenizer: Any, task: Any, config: PPOConfig | None = None,
                 *, engine: Any = None, step_rewards: StepRewardFn | None = None) -> None:
        config = PPOConfig() if config is None else config
        if not isinstance(config, PPOConfig):
            raise TypeError(f"config must be a PPOConfig, got {type(config).__name__}")
        if config.reward_mode == "dense" and step_rewards is None:
            raise ValueError("reward_mode='dense' needs step_rewards (e.g. a PRM through "
                             "o1search.reward.dense_step_rewards); or use reward_mode='outcome'")
        self.model = model
        self.tokenizer = tokenizer
        self.task = task
        self.config = config
        self.step_rewards = step_rewards
        self.engine = engine if engine is not None else engine_for(model, tokenizer)
        self.reference = frozen_copy(model) if config.kl_coef > 0 else None
        device = next(model.parameters()).device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.value_head = ValueHead(int(model.config.hidden_size)).to(device)
        decay = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "lr": config.learning_rate},
             {"params": list(self.value_head.parameters()), "lr": config.value_learning_rate}],
            weight_decay=config.weight_decay)
        self._delim = tuple(tokenizer.encode(config.step_delimiter, add_special_tokens=False))
        self.steps = 0

    def state_dict(self) -> dict[str, Any]:
        """Optimizer, value head and step counter (the policy is saved by the caller)."""
        state = {"optimizer": self.optimizer.state_dict(), "steps": self.steps,
                 "value_head": self.value_head.state_dict()}
        if self.reference is not None:  # the reference is the policy as it was at the start
            state["reference"] = self.reference.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the engine gets the model's current weights."""
        self.value_head.load_state_dict(state["value_head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])
        if self.reference is not None and "reference" in state:
            self.reference.load_state_dict(state["reference"])
        self.engine.load_weights(self.model)

    def _values(self, batch: Any, model: Any) -> tuple[torch.Tensor, torch.Tensor]:
        lp, hidden = token_logprobs(model, batch, with_hidden=True)
        return lp, self.value_head(hidden) * batch.completion_mask

    def step(self, problems: Sequence[Any]) -> dict[str, float]:
        """Sample, reward, estimate advantages and update on one batch of problems.

        Returns:
            Metrics: ``reward_mean``, ``policy_loss``, ``value_loss``, ``kl``,
            ``clip_frac``, ``generated_tokens``, ``optimizer_steps``, ``seconds``.

        Raises:
            ValueError: no problems, bad step rewards, or a diverged update.
        """
        if len(problems) == 0:
            raise ValueError("step needs at least one problem")
        from o1search.policy import encode_prompt
        from o1search.reward.evaluators import step_end_positions
        from o1search.search import derive_seed

        cfg, model = self.config, self.model
        start = time.perf_counter()
        prompts = [encode_prompt(self.tokenizer, self.task.prompt(p)) for p in problems]
        self.engine.flush_cache()
        roll = sample_rollouts(self.engine, prompts, num_samples=cfg.num_samples,
                               max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                               seed=derive_seed(cfg.seed, "ppo", self.steps))
        texts = [self.tokenizer.decode(list(c), skip_special_tokens=True)
                 for c in roll.completions]
        outcomes = [float(self.task.verify(problems[g], t)) for g, t in zip(roll.group, texts)]
        pad = self.tokenizer.pad_token_id or 0
        device = next(model.parameters()).device
        batch = pad_completions(roll.prompts, roll.completions, pad_id=pad).to(device)
        mask = batch.completion_mask
        with torch.no_grad():
            model.eval()
            old_lp, old_v = self._values(batch, model)
            ref_lp = token_logprobs(self.reference, batch)[0] if self.reference else None
        kl = None if ref_lp is None else (old_lp - ref_lp) * mask
        if cfg.reward_mode == "dense":
            eos = set(self.engine.eos_token_ids)
            positions = [step_end_positions(c, self._delim, eos_token_ids=eos)
                         for c in roll.completions]
            # EOS alone after the last step is an action with no step of its own: the last
            # step's reward lands on the step's last token, EOS gets the KL term only.
            dense = self.step_rewards(list(roll.prompts), list(roll.completions), outcomes)
            rewards = token_rewards(mask.cpu(), step_positions=positions, step_rewards=dense,
                                    kl=None if kl is None else kl.cpu(), kl_coef=cfg.kl_coef)
        else:
            rewards = token_rewards(mask.cpu(), outcomes=outcomes,
                                    kl=None if kl is None else kl.cpu(), kl_coef=cfg.kl_coef)
        rewards = rewards.to(device)
        adv, returns = compute_gae(rewards, old_v, mask, gamma=cfg.gamma, lam=cfg.lam)
        if cfg.whiten_advantages:
            adv = masked_whiten(adv, mask)
        mb = cfg.mini_batch_size or len(batch)
        order_rng = random.Random(derive_seed(cfg.seed, "ppo-order", self.steps))
        pl, vl, clip, n_opt = [], [], [], 0
        params = [p for p in model.parameters() if p.requires_grad] + list(
            self.value_head.parameters())
        model.train()
        try:
            for idx, sub in shuffled_minibatches(batch, mb, cfg.ppo_epochs, order_rng):
                t = sub.completion_mask.shape[1]
                lp, v = self._values(sub, model)
                p_loss, st = clipped_policy_loss(
                    lp, old_lp[idx][:, :t], adv[idx][:, :t], sub.completion_mask,
                    epsilon=cfg.clip_eps, loss_type="token_mean")
                v_loss = value_loss(v, old_v[idx][:, :t], returns[idx][:, :t],
                                    sub.completion_mask, clip=cfg.value_clip)
                loss = p_loss + cfg.vf_coef * v_loss
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                self.optimizer.step()
                pl.append(check_finite(float(p_loss.detach()), "the PPO policy loss"))
                vl.append(float(v_loss.detach()))
                clip.append(st["clip_frac"])
                n_opt += 1
        finally:
            model.eval()
        self.engine.load_weights(model)
        self.steps += 1
        return {
            "reward_mean": sum(outcomes) / len(outcomes),
            "policy_loss": sum(pl) / len(pl),
            "value_loss": sum(vl) / len(vl),
            "kl": 0.0 if kl is None else float(masked_mean(kl, mask)),
            "clip_frac": sum(clip) / len(clip),
            "generated_tokens": float(roll.generated_tokens),
            "optimizer_steps": float(n_opt),
            "seconds": time.perf_counter() - start,
        }
