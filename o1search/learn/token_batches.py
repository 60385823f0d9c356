"""Token batches of the RL / preference trainers: right-padded ``prompt + completion``
sequences (:class:`TokenBatch`), the per-token log-probabilities a model gives their
completions, masked reductions over completion tokens, and row selection / shuffled
minibatches for the update epochs.

Private: users import the trainers from :mod:`o1search.learn`.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator, Sequence
from typing import Any

import torch

__all__ = [
    "TokenBatch",
    "masked_mean",
    "masked_whiten",
    "pad_completions",
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
