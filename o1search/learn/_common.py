"""Shared pieces of the RL / preference trainers: batching token sequences, per-token
log-probabilities, masked reductions, rollouts through the Engine, optimizers.

Private: users import the trainers from :mod:`o1search.learn`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

import torch

__all__ = [
    "Rollout",
    "TokenBatch",
    "engine_for",
    "frozen_copy",
    "make_optimizer",
    "masked_mean",
    "masked_whiten",
    "pad_completions",
    "sample_rollouts",
    "select_rows",
    "shuffled_minibatches",
    "token_logprobs",
]


def _ids(x: Any, what: str) -> list[int]:
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{what} must be token ids, not text")
    try:
        out = [int(t) for t in (x.tolist() if hasattr(x, "tolist") else x)]
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a sequence of integer token ids") from None
    if any(t < 0 for t in out):
        raise ValueError(f"{what} holds a negative token id")
    return out


@dataclasses.dataclass
class TokenBatch:
    """Right-padded ``prompt + completion`` sequences and where the completions sit.

    Attributes:
        input_ids: ``[N, L]`` long, padded with ``pad_id``.
        attention_mask: ``[N, L]`` long, 1 on real tokens.
        prompt_lens: ``[N]`` long.
        completion_mask: ``[N, T]`` float, 1 on real completion tokens (``T`` the longest
            completion); completion token ``t`` of row ``i`` is ``input_ids[i, prompt_lens[i] + t]``.
        completion_ids: ``[N, T]`` long (pad where the mask is 0).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    prompt_lens: torch.Tensor
    completion_mask: torch.Tensor
    completion_ids: torch.Tensor

    def to(self, device: torch.device | str) -> TokenBatch:
        """The batch on ``device``."""
        return TokenBatch(*(getattr(self, f.name).to(device) for f in dataclasses.fields(self)))

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def pad_completions(
    prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], *, pad_id: int = 0
) -> TokenBatch:
    """Batch (prompt, completion) token sequences for a forward pass.

    Parameters:
        prompts: ``N`` non-empty prompt token id sequences.
        completions: ``N`` non-empty completion token id sequences.
        pad_id: id used for padding (masked out everywhere).

    Returns:
        A :class:`TokenBatch`.

    Raises:
        ValueError: lengths differ, no rows, an empty prompt or completion.
        TypeError: text or non-integer ids.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    if len(prompts) == 0:
        raise ValueError("no sequences to batch")
    ps = [_ids(p, f"prompts[{i}]") for i, p in enumerate(prompts)]
    cs = [_ids(c, f"completions[{i}]") for i, c in enumerate(completions)]
    for i, (p, c) in enumerate(zip(ps, cs)):
        if not p:
            raise ValueError(f"prompts[{i}] is empty (a completion needs context to be scored)")
        if not c:
            raise ValueError(f"completions[{i}] is empty")
    n = len(ps)
    width = max(len(p) + len(c) for p, c in zip(ps, cs))
    tmax = max(len(c) for c in cs)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    attn = torch.zeros((n, width), dtype=torch.long)
    cids = torch.full((n, tmax), pad_id, dtype=torch.long)
    cmask = torch.zeros((n, tmax), dtype=torch.float32)
    for i, (p, c) in enumerate(zip(ps, cs)):
        seq = p + c
        ids[i, : len(seq)] = torch.tensor(seq)
        attn[i, : len(seq)] = 1
        cids[i, : len(c)] = torch.tensor(c)
        cmask[i, : len(c)] = 1.0
    lens = torch.tensor([len(p) for p in ps], dtype=torch.long)
    return TokenBatch(ids, attn, lens, cmask, cids)


def _completion_index(batch: TokenBatch) -> torch.Tensor:
    """``[N, T]`` positions of the logits that predict each completion token (clamped on
    padding, which the mask removes)."""
    t = torch.arange(batch.completion_ids.shape[1], device=batch.input_ids.device)
    pos = batch.prompt_lens.unsqueeze(1) - 1 + t.unsqueeze(0)
    return pos.clamp(max=batch.input_ids.shape[1] - 1)


def token_logprobs(
    model: torch.nn.Module, batch: TokenBatch, *, with_hidden: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probabilities of every completion token under ``model`` (gradients flow).

    Parameters:
        model: a ``transformers`` causal LM.
        batch: a :class:`TokenBatch` on the model's device.
        with_hidden: also return the last hidden state at the position that predicts each
            completion token (the state a value head scores).

    Returns:
        ``(logprobs [N, T] float32, hidden [N, T, H] or None)``; entries where
        ``batch.completion_mask`` is 0 are 0 (logprobs) / unspecified (hidden).
    """
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                output_hidden_states=with_hidden)
    idx = _completion_index(batch)
    logits = out.logits.gather(
        1, idx.unsqueeze(-1).expand(-1, -1, out.logits.shape[-1])
    ).float()
    lp = torch.log_softmax(logits, dim=-1).gather(-1, batch.completion_ids.unsqueeze(-1))
    lp = lp.squeeze(-1) * batch.completion_mask
    hidden = None
    if with_hidden:
        h = out.hidden_states[-1]
        hidden = h.gather(1, idx.unsqueeze(-1).expand(-1, -1, h.shape[-1]))
    return lp, hidden


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` is 1 (0 when there are none)."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, *, eps: float = 1e-8) -> torch.Tensor:
    """``(x - mean) / std`` over the masked entries (unbiased std, as PPO implementations
    normalize advantages); entries outside the mask are 0."""
    mean = masked_mean(x, mask)
    n = mask.sum()
    var = ((x - mean) ** 2 * mask).sum() / (n - 1).clamp(min=1)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``model`` in eval mode with ``requires_grad=False`` everywhere (the
    frozen reference of a KL penalty / DPO)."""
    ref = copy.deepcopy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


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


def engine_for(model: torch.nn.Module, tokenizer: Any, **kwargs: Any) -> Any:
    """An :class:`o1search.engine.Engine` over a *copy* of ``model``.

    The engine runs its model's weights in place; giving it a copy keeps training (train
    mode, in-flight optimizer steps) apart from search, and makes
    ``engine.load_weights(model)`` the one moment the search policy changes.
    """
    from o1search.engine import Engine

    return Engine(copy.deepcopy(model), tokenizer, **kwargs)


@dataclasses.dataclass
class Rollout:
    """Sampled completions of a batch of prompts (``G`` per prompt, grouped).

    Attributes:
        prompts: ``N = B * G`` prompt token tuples (each repeated ``G`` times).
        completions: ``N`` completion token tuples (EOS included when hit).
        finish_reasons: ``N`` of ``"eos"``, ``"length"``.
        group: ``N`` ints, the prompt index of each row.
        generated_tokens: tokens sampled in total.
    """

    prompts: list[tuple[int, ...]]
    completions: list[tuple[int, ...]]
    finish_reasons: list[str]
    group: list[int]
    generated_tokens: int


def sample_rollouts(
    engine: Any, prompts: Sequence[Sequence[int]], *, num_samples: int, max_new_tokens: int,
    temperature: float = 1.0, top_p: float = 1.0, seed: int = 0,
) -> Rollout:
    """Sample ``num_samples`` whole completions of each prompt in one ``Engine.expand`` call.

    Parameters:
        engine: an :class:`o1search.engine.Engine`.
        prompts: ``B`` prompt token sequences.
        num_samples: ``G`` completions per prompt.
        max_new_tokens: longest completion.
        temperature, top_p: sampling (temperature 1 samples the policy itself, as on-policy
            gradients assume).
        seed: prompt ``b`` is sampled with seed ``derive_seed(seed, b)``.

    Returns:
        A :class:`Rollout` with ``B * G`` rows grouped by prompt. An empty sample (the prompt
        already filled the model's positions) is replaced by the EOS token so every row has
        an action to score.
    """
    from o1search.engine import ExpandRequest, SamplingParams, StopRule
    from o1search.search import derive_seed

    stop = StopRule(step_delimiter=None, stop_at_eos=True, max_new_tokens=max_new_tokens)
    reqs = [ExpandRequest(tuple(int(t) for t in p), num_samples,
                          SamplingParams(temperature=temperature, top_p=top_p,
                                         seed=derive_seed(seed, b)), stop)
            for b, p in enumerate(prompts)]
    results = engine.expand(reqs)
    eos = min(engine.eos_token_ids) if engine.eos_token_ids else 0
    out = Rollout([], [], [], [], 0)
    for b, (req, res) in enumerate(zip(reqs, results)):
        for s in res.samples:
            toks = tuple(int(t) for t in s.tokens) or (eos,)
            out.prompts.append(req.prefix)
            out.completions.append(toks)
            out.finish_reasons.append(s.finish_reason)
            out.group.append(b)
            out.generated_tokens += len(s.tokens)
    return out


def check_finite(x: float, what: str) -> float:
    """``x`` when finite; a ValueError naming ``what`` otherwise (a diverged update)."""
    if not math.isfinite(x):
        raise ValueError(f"{what} is {x}: the update diverged (lower the learning rate)")
    return x


def select_rows(batch: TokenBatch, idx: torch.Tensor) -> TokenBatch:
    """Rows ``idx`` of a TokenBatch, trimmed to their longest sequence and completion."""
    ids = batch.input_ids[idx]
    attn = batch.attention_mask[idx]
    width = int(attn.sum(1).max())
    cm = batch.completion_mask[idx]
    tmax = int(cm.sum(1).max())
    return TokenBatch(ids[:, :width], attn[:, :width], batch.prompt_lens[idx], cm[:, :tmax],
                      batch.completion_ids[idx][:, :tmax])


def shuffled_minibatches(batch: TokenBatch, size: int, epochs: int, rng: random.Random
                         ) -> Iterator[tuple[torch.Tensor, TokenBatch]]:
    """``epochs`` passes over the rows of ``batch`` in a fresh ``rng`` order each pass, in
    minibatches of ``size`` rows: yields ``(row indices [m], rows)`` (PPO / GRPO updates)."""
    n = batch.input_ids.shape[0]
    device = batch.input_ids.device
    for _ in range(epochs):
        order = list(range(n))
        rng.shuffle(order)
        for s in range(0, n, size):
            idx = torch.tensor(order[s:s + size], device=device)
            yield idx, select_rows(batch, idx)
