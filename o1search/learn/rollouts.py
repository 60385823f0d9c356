"""Roll-outs through the Engine for the RL trainers: :func:`engine_for` (an Engine over a copy
of the policy being trained) and :func:`sample_rollouts` (whole sampled completions of a batch
of prompts, grouped by prompt, as a :class:`Rollout`).

Private: users import the trainers from :mod:`o1search.learn`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["Rollout", "engine_for", "sample_rollouts"]


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
