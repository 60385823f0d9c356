"""Outcome reward model: a transformer backbone with a scalar head scoring whole answers,
trained with the Bradley–Terry preference loss.

:class:`OutcomeRewardModel` reads the head at the last token of ``prompt + completion``; its
raw output ``r`` is a reward on a logit scale, and ``sigmoid(r)`` the value in ``[0, 1]``
that the search layer's :class:`~o1search.protocols.Evaluator` protocol asks for.
:func:`train_orm` minimizes ``-log sigmoid(r(chosen) - r(rejected))`` over preference pairs.
Scoring, the engine path and checkpoints are as for :class:`~o1search.reward.prm.
ProcessRewardModel` (same directory layout, ``kind = "orm"``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from o1search.reward.evaluators import as_tokens, check_batch, check_requests
from o1search.reward.scalar_head import ScalarHeadModel
from o1search.reward.train_loop import (
    RewardTrainConfig,
    RewardTrainResult,
    _f,
    run_training,
)

__all__ = [
    "ORMTrainConfig",
    "OutcomeRewardModel",
    "PreferencePair",
    "bradley_terry_loss",
    "train_orm",
]


class OutcomeRewardModel(ScalarHeadModel):
    """Transformer + scalar head scoring a completed answer; a search
    :class:`~o1search.protocols.Evaluator`.

    Parameters
    ----------
    backbone : transformers.PreTrainedModel
        A causal LM (e.g. a copy of the policy).
    tokenizer : optional
        Saved with the model.
    use_engine, engine_pages, engine_page_size, head
        See :class:`~o1search.reward.scalar_head.ScalarHeadModel`.
    """

    kind = "orm"

    def __init__(self, backbone: torch.nn.Module, tokenizer: Any = None, *,
                 use_engine: bool | None = None, engine_pages: int = 1024,
                 engine_page_size: int = 16, head: torch.nn.Linear | None = None) -> None:
        super().__init__(backbone, tokenizer, use_engine=use_engine, engine_pages=engine_pages,
                         engine_page_size=engine_page_size, head=head)
        self.calls = 0
        self.evaluated = 0

    def rewards(self, prompts: Sequence[Sequence[int]],
                completions: Sequence[Sequence[int]]) -> np.ndarray:
        """Raw rewards (head logits at the last token) of ``B`` paths.

        Parameters
        ----------
        prompts, completions : sequences of token-id sequences (``B`` each)

        Returns
        -------
        numpy.ndarray
            ``[B]`` float64.

        Raises
        ------
        ValueError
            Mismatched lengths, empty prompts, bad ids, too long paths.
        """
        ps, cs = check_batch(prompts, completions)
        seqs = [p + c for p, c in zip(ps, cs)]
        if not seqs:
            return np.zeros(0)
        out = self._infer_logits(seqs, [[len(s) - 1] for s in seqs])
        return np.asarray([o[0] for o in out], dtype=np.float64)

    def reward_logits(self, prompts: Sequence[Sequence[int]],
                      completions: Sequence[Sequence[int]]) -> torch.Tensor:
        """Raw rewards by a plain forward, with gradients when enabled (training path).

        Returns
        -------
        torch.Tensor
            ``[B]`` float32.
        """
        ps, cs = check_batch(prompts, completions)
        seqs = [p + c for p, c in zip(ps, cs)]
        if not seqs:
            return torch.zeros(0)
        return torch.cat(self.head_logits(seqs, [[len(s) - 1] for s in seqs]))

    def evaluate(self, requests: Sequence[Any]) -> list[float]:
        """``sigmoid(reward)`` in ``[0, 1]`` per
        :class:`~o1search.protocols.EvalRequest` (finished or not: the ORM judges what is
        there).

        Raises
        ------
        TypeError
            A request without ``prompt`` / ``completion``.
        """
        reqs = check_requests(requests)
        self.calls += 1
        if not reqs:
            return []
        r = self.rewards([q.prompt for q in reqs], [q.completion for q in reqs])
        self.evaluated += len(reqs)
        return [float(x) for x in 1.0 / (1.0 + np.exp(-r))]

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str | torch.device = "cpu",
             dtype: torch.dtype = torch.float32,
             use_engine: bool | None = None) -> OutcomeRewardModel:
        """Load a checkpoint written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
            Not a reward checkpoint.
        ValueError
            A checkpoint of another kind or format.
        """
        backbone, tokenizer, head, _ = cls._load_parts(path, device, dtype)
        return cls(backbone, tokenizer, use_engine=use_engine, head=head)


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor,
                       margin: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Mean Bradley–Terry negative log-likelihood ``-log sigmoid(r_c - r_r - margin)``.

    Parameters
    ----------
    chosen, rejected : torch.Tensor
        ``[B]`` rewards of the preferred and the rejected answers.
    margin : float or torch.Tensor
        Required reward gap (scalar or ``[B]``), 0 for the plain model.

    Returns
    -------
    torch.Tensor
        Scalar.

    Raises
    ------
    ValueError
        Shapes that differ or empty inputs.
    """
    if chosen.shape != rejected.shape or chosen.ndim != 1 or chosen.numel() == 0:
        raise ValueError(f"chosen and rejected must be equal non-empty 1-D tensors, got "
                         f"{tuple(chosen.shape)} and {tuple(rejected.shape)}")
    # logsigmoid is the stable form of log(1 / (1 + exp(-x))).
    return -torch.nn.functional.logsigmoid(chosen - rejected - margin).mean()


@dataclasses.dataclass(frozen=True)
class PreferencePair:
    """Two answers to one prompt, ``chosen`` preferred over ``rejected``.

    Attributes
    ----------
    prompt, chosen, rejected : tuple of int
        Token ids (the prompt non-empty; the two completions after it).
    margin : float
        Required reward gap (>= 0; 0 for the plain Bradley–Terry model).
    """

    prompt: tuple[int, ...]
    chosen: tuple[int, ...]
    rejected: tuple[int, ...]
    margin: float = 0.0

    def __post_init__(self) -> None:
        for name in ("prompt", "chosen", "rejected"):
            object.__setattr__(self, name, as_tokens(getattr(self, name),
                                                     f"PreferencePair.{name}"))
        if not self.prompt:
            raise ValueError("PreferencePair.prompt is empty")
        if not float(self.margin) >= 0:
            raise ValueError(f"PreferencePair.margin must be >= 0, got {self.margin}")


@dataclasses.dataclass
class ORMTrainConfig(RewardTrainConfig):
    """Training of an :class:`OutcomeRewardModel` with the Bradley–Terry loss.

    The run lasts ``max_steps`` optimizer steps, or else ``num_epochs`` passes over the pairs.
    """

    batch_size: int = _f(16, "pairs per optimizer step")


def train_orm(orm: OutcomeRewardModel, pairs: Sequence[PreferencePair],
              config: ORMTrainConfig | None = None) -> RewardTrainResult:
    """Fit ``orm`` to preferences with :func:`bradley_terry_loss`.

    Parameters
    ----------
    orm : OutcomeRewardModel
        Trained in place; its engine cache is flushed afterwards.
    pairs : sequence of PreferencePair
    config : ORMTrainConfig, optional

    Returns
    -------
    RewardTrainResult

    Raises
    ------
    TypeError
        ``orm``, ``config`` or a pair of the wrong type.
    ValueError
        No pairs; paths too long for the backbone or with out-of-vocabulary ids.
    """
    if not isinstance(orm, OutcomeRewardModel):
        raise TypeError(f"orm must be an OutcomeRewardModel, got {type(orm).__name__}")
    config = ORMTrainConfig() if config is None else config
    if not isinstance(config, ORMTrainConfig):
        raise TypeError(f"config must be an ORMTrainConfig, got {type(config).__name__}")
    items = []
    for i, pr in enumerate(pairs):
        if not isinstance(pr, PreferencePair):
            raise TypeError(f"pairs[{i}] is a {type(pr).__name__}, not a PreferencePair")
        for name in ("chosen", "rejected"):
            orm._check_seq(pr.prompt + getattr(pr, name), f"pairs[{i}].{name}")
        items.append(pr)

    def loss_fn(batch: list[PreferencePair]) -> torch.Tensor:
        # Chosen and rejected go through one forward: half the calls, same padding.
        r = orm.reward_logits([p.prompt for p in batch] * 2,
                              [p.chosen for p in batch] + [p.rejected for p in batch])
        n = len(batch)
        margin = torch.tensor([p.margin for p in batch], dtype=torch.float32, device=r.device)
        return bradley_terry_loss(r[:n], r[n:], margin)

    return run_training(orm, items, loss_fn, config)
