"""Plain batched generation and accuracy for a policy, for evaluation (not for search).

Search goes through :class:`o1search.engine.Engine`; this module exists so that policy
training can report greedy and best-of-N accuracy with nothing but ``model.generate``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from o1search.policy.model import encode_prompt

__all__ = ["PolicyEval", "evaluate_policy", "generate_completions"]


@torch.no_grad()
def generate_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 128,
    num_samples: int = 1,
    do_sample: bool | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
) -> list[list[str]]:
    """Complete each prompt with ``model.generate`` (left-padded batches, KV cache).

    Parameters:
        model: a causal LM.
        tokenizer: its tokenizer (with a pad token).
        prompts: task prompts; each is formatted with :func:`encode_prompt`.
        max_new_tokens: the longest completion, in tokens.
        num_samples: completions per prompt.
        do_sample: sample (True) or decode greedily (False); default: sample when
            ``num_samples > 1``.
        temperature, top_p: sampling parameters (ignored when greedy).
        seed: sampling seed; the global torch RNG is left untouched.
        batch_size: prompts per ``generate`` call.

    Returns:
        ``completions[i][j]``: sample ``j`` of prompt ``i``, decoded up to (not including)
        the first EOS, special tokens removed.

    Raises:
        ValueError: ``num_samples``, ``max_new_tokens`` or ``batch_size`` below 1, greedy
            decoding with ``num_samples > 1``, or a tokenizer without a pad token.
    """
    if num_samples < 1 or max_new_tokens < 1 or batch_size < 1:
        raise ValueError("num_samples, max_new_tokens and batch_size must be >= 1")
    do_sample = num_samples > 1 if do_sample is None else do_sample
    if not do_sample and num_samples > 1:
        raise ValueError("greedy decoding gives one completion per prompt; set do_sample=True")
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token first")
    eos_id = tokenizer.eos_token_id
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[list[str]] = []
    sampling: dict[str, Any] = (
        {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
        if do_sample
        else {"do_sample": False}
    )
    try:
        with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
            torch.manual_seed(seed)
            for start in range(0, len(prompts), batch_size):
                chunk = [encode_prompt(tokenizer, p) for p in prompts[start : start + batch_size]]
                width = max(len(ids) for ids in chunk)
                # Left padding: every row's last prompt token sits in the same column, so
                # the new tokens of all rows are appended together.
                input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for r, ids in enumerate(chunk):
                    input_ids[r, width - len(ids) :] = torch.tensor(ids)
                    mask[r, width - len(ids) :] = 1
                gen = model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=mask.to(device),
                    max_new_tokens=max_new_tokens,
                    num_return_sequences=num_samples,
                    pad_token_id=pad_id,
                    eos_token_id=eos_id,
                    **sampling,
                )
                new = gen[:, width:].tolist()
                for r in range(len(chunk)):
                    row = []
                    for ids in new[r * num_samples : (r + 1) * num_samples]:
                        if eos_id is not None and eos_id in ids:
                            ids = ids[: ids.index(eos_id)]
                        row.append(tokenizer.decode(ids, skip_special_tokens=True))
                    out.append(row)
    finally:
        model.train(was_training)
    return out


@dataclasses.dataclass(frozen=True)
class PolicyEval:
    """Accuracy of a policy on a list of problems.

    Attributes:
        accuracy: fraction of problems with at least one correct completion (greedy
            accuracy for one greedy sample; best-of-N with the exact verifier otherwise).
        sample_accuracy: fraction of all completions that are correct.
        num_problems: problems evaluated.
        num_samples: completions per problem.
        completions: ``completions[i][j]``, the text of sample ``j`` of problem ``i``.
        rewards: ``rewards[i][j]``, the verifier's reward of that completion.
    """

    accuracy: float
    sample_accuracy: float
    num_problems: int
    num_samples: int
    completions: list[list[str]]
    rewards: list[list[float]]


def evaluate_policy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    task: Any,
    problems: Sequence[Any],
    *,
    num_samples: int = 1,
    do_sample: bool | None = None,
    temperature: float = 1.0,
    max_new_tokens: int = 128,
    seed: int = 0,
    batch_size: int = 64,
) -> PolicyEval:
    """Greedy (``num_samples=1``) or best-of-N accuracy of a policy, judged by ``task.verify``.

    Parameters:
        model, tokenizer: the policy.
        task: an :class:`o1search.tasks.Task` (gives ``prompt`` and ``verify``).
        problems: the problems to solve.
        num_samples, do_sample, temperature, max_new_tokens, seed, batch_size: as in
            :func:`generate_completions`.

    Returns:
        A :class:`PolicyEval`.

    Raises:
        ValueError: no problems, or bad generation arguments.
    """
    if not problems:
        raise ValueError("no problems to evaluate")
    completions = generate_completions(
        model,
        tokenizer,
        [task.prompt(p) for p in problems],
        max_new_tokens=max_new_tokens,
        num_samples=num_samples,
        do_sample=do_sample,
        temperature=temperature,
        seed=seed,
        batch_size=batch_size,
    )
    rewards = [[task.verify(p, c) for c in row] for p, row in zip(problems, completions)]
    solved = sum(max(r) > 0.5 for r in rewards)
    flat = [x for r in rewards for x in r]
    return PolicyEval(
        accuracy=solved / len(problems),
        sample_accuracy=sum(x > 0.5 for x in flat) / len(flat),
        num_problems=len(problems),
        num_samples=num_samples,
        completions=completions,
        rewards=rewards,
    )
