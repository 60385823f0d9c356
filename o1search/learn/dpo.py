"""Step-level DPO from search trees.

Siblings in a search tree share their prefix, so two children of one node whose backed-up
values differ make a preference pair over *one step*: ``(prefix, chosen step, rejected
step)`` (Step-DPO, Lai et al. 2024; MCTS-DPO, Xie et al. 2024). The loss is DPO's
(Rafailov et al. 2023) on the log-probabilities of the step tokens given the prefix,
relative to a frozen reference:

    h = (logp(chosen) - ref(chosen)) - (logp(rejected) - ref(rejected))
    sigmoid: -(1 - eps) * log sigmoid(beta * h) - eps * log sigmoid(-beta * h)
    ipo:     (h - 1 / (2 * beta))^2
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from o1search.learn.dpo_config import DPO_LOSS_TYPES, PAIR_MODES, DPOConfig
from o1search.learn.optim import check_finite, frozen_copy, make_optimizer
from o1search.learn.token_batches import pad_completions, token_logprobs

__all__ = ["DPOResult", "DPOTrainer", "StepPair", "dpo_loss", "step_preference_pairs"]


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    loss_type: str = "sigmoid",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DPO loss of each pair.

    Parameters:
        policy_chosen, policy_rejected: ``[B]`` summed log-probabilities of the chosen /
            rejected continuations under the policy.
        ref_chosen, ref_rejected: ``[B]`` the same under the frozen reference.
        beta: > 0.
        label_smoothing: in ``[0, 0.5)`` (sigmoid loss only).
        loss_type: ``"sigmoid"`` or ``"ipo"``.

    Returns:
        ``(losses [B], chosen_rewards [B], rejected_rewards [B])`` where the implicit rewards
        are ``beta * (policy - ref)`` (detached).

    Raises:
        ValueError: shapes differ, or bad ``beta`` / ``label_smoothing`` / ``loss_type``.
    """
    shapes = {tuple(t.shape) for t in (policy_chosen, policy_rejected, ref_chosen, ref_rejected)}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"all four log-probability tensors must be [B] of one size, got "
                         f"{sorted(shapes)}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if loss_type not in DPO_LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {DPO_LOSS_TYPES}, got {loss_type!r}")
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    h = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    if loss_type == "ipo":
        losses = (h - 1.0 / (2.0 * beta)) ** 2
    else:
        losses = (-(1 - label_smoothing) * F.logsigmoid(beta * h)
                  - label_smoothing * F.logsigmoid(-beta * h))
    return (losses, beta * (policy_chosen - ref_chosen).detach(),
            beta * (policy_rejected - ref_rejected).detach())


@dataclasses.dataclass(frozen=True)
class StepPair:
    """One step-level preference.

    Attributes:
        prefix: token ids from the root (prompt included) to the common parent.
        chosen, rejected: the two sibling steps' token ids.
        chosen_value, rejected_value: their values in the tree.
        parent: the parent node id (for provenance).
    """

    prefix: tuple[int, ...]
    chosen: tuple[int, ...]
    rejected: tuple[int, ...]
    chosen_value: float
    rejected_value: float
    parent: int = -1


def _node_value(node: dict[str, Any]) -> float:
    # A terminal leaf scored once holds its reward as value; one never visited has only the
    # reward set by set_terminal.
    if node["visits"] == 0 and node.get("terminal"):
        return float(node["reward"])
    return float(node["value"])


def step_preference_pairs(tree: Any, *, min_margin: float = 0.2, min_visits: int = 1,
                          pairs: str = "best_worst") -> list[StepPair]:
    """Preference pairs between sibling steps of a search tree.

    For every node with at least two children that have ``min_visits`` visits (terminal
    leaves count with their reward), children are ranked by value; ``"best_worst"`` pairs the
    highest with the lowest, ``"all"`` pairs every higher with every lower sibling. A pair is
    kept when the values differ by at least ``min_margin`` and the steps differ.

    Parameters:
        tree: an :class:`o1search.SearchTree` or its ``to_dict()``.
        min_margin: least value gap (>= 0; a gap of exactly 0 never makes a pair).
        min_visits: least visits of a compared child.
        pairs: ``"best_worst"`` or ``"all"``.

    Returns:
        Pairs in order of parent id, then (for ``"all"``) of chosen/rejected rank.

    Raises:
        ValueError: bad ``pairs`` / margins, or a dict that is not a tree's ``to_dict``.
    """
    if pairs not in PAIR_MODES:
        raise ValueError(f"pairs must be one of {PAIR_MODES}, got {pairs!r}")
    if min_margin < 0 or min_visits < 0:
        raise ValueError("min_margin and min_visits must be >= 0")
    doc = tree.to_dict() if hasattr(tree, "to_dict") else tree
    try:
        nodes = {int(n["id"]): n for n in doc["nodes"]}
        root = int(doc["root"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a search tree dict (SearchTree.to_dict()): {exc}") from None
    prefix_of: dict[int, tuple[int, ...]] = {root: tuple(int(t) for t in nodes[root]["tokens"])}
    out: list[StepPair] = []
    for nid in sorted(nodes):
        node = nodes[nid]
        if nid not in prefix_of:
            parent = int(node["parent"])
            prefix_of[nid] = prefix_of[parent] + tuple(int(t) for t in node["tokens"])
        kids = [nodes[int(c)] for c in node["children"]]
        ranked = [(_node_value(k), int(k["id"])) for k in kids
                  if k["visits"] >= min_visits or (k.get("terminal") and k["visits"] == 0
                                                   and min_visits <= 1)]
        if len(ranked) < 2:
            continue
        # Highest value first; among equal values the older (lower id) sibling first.
        ranked.sort(key=lambda x: (-x[0], x[1]))
        cands = ([(ranked[0], ranked[-1])] if pairs == "best_worst" else
                 [(ranked[i], ranked[j]) for i in range(len(ranked))
                  for j in range(i + 1, len(ranked))])
        base = prefix_of[nid]
        for (vc, c), (vr, r) in cands:
            ct = tuple(int(t) for t in nodes[c]["tokens"])
            rt = tuple(int(t) for t in nodes[r]["tokens"])
            if vc - vr < min_margin or vc - vr <= 0 or ct == rt:
                continue
            out.append(StepPair(base, ct, rt, vc, vr, nid))
    return out


@dataclasses.dataclass
class DPOResult:
    """What a DPO run did: per-step ``losses``, ``reward_accuracy`` (share of pairs whose
    chosen implicit reward beats the rejected one, per step), ``steps``, ``pairs``,
    ``seconds``."""

    losses: list[float]
    reward_accuracy: list[float]
    steps: int
    pairs: int
    seconds: float


class DPOTrainer:
    """Step-level DPO on :class:`StepPair` s against a frozen reference.

    Parameters:
        model: the policy (trained in place).
        tokenizer: its tokenizer (for the pad id).
        config: a :class:`DPOConfig`.
        reference: the frozen reference; default a frozen copy of ``model`` as it is now.

    Raises:
        TypeError: ``config`` is not a DPOConfig.
    """

    def __init__(self, model: Any, tokenizer: Any, config: DPOConfig | None = None, *,
                 reference: Any = None) -> None:
        config = DPOConfig() if config is None else config
        if not isinstance(config, DPOConfig):
            raise TypeError(f"config must be a DPOConfig, got {type(config).__name__}")
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.reference = frozen_copy(model) if reference is None else reference
        for p in self.reference.parameters():
            p.requires_grad_(False)
        self.optimizer = make_optimizer(model.parameters(), lr=config.learning_rate,
                                        weight_decay=config.weight_decay)

    def _logps(self, model: Any, prefixes: list, steps: list) -> torch.Tensor:
        batch = pad_completions(prefixes, steps, pad_id=self.tokenizer.pad_token_id or 0)
        batch = batch.to(next(model.parameters()).device)
        lp, _ = token_logprobs(model, batch)
        return lp.sum(1)

    def train(self, pairs: Sequence[StepPair]) -> DPOResult:
        """Run ``num_epochs`` passes of DPO over ``pairs``.

        Returns:
            A :class:`DPOResult`.

        Raises:
            ValueError: no pairs, or a diverged update.
            TypeError: items that are not StepPair.
        """
        if len(pairs) == 0:
            raise ValueError("no preference pairs to train on (lower min_margin, or search "
                             "more so siblings get different values)")
        for i, p in enumerate(pairs):
            if not isinstance(p, StepPair):
                raise TypeError(f"pairs[{i}] is a {type(p).__name__}, not a StepPair")
        from tqdm.auto import tqdm

        cfg, model = self.config, self.model
        start = time.perf_counter()
        rng = random.Random(f"dpo:{cfg.seed}")
        losses, accs = [], []
        per_epoch = -(-len(pairs) // cfg.batch_size)
        bar = tqdm(total=per_epoch * cfg.num_epochs, desc="dpo", disable=not cfg.progress)
        model.train()
        try:
            for _ in range(cfg.num_epochs):
                order = list(range(len(pairs)))
                rng.shuffle(order)
                for s in range(0, len(order), cfg.batch_size):
                    chunk = [pairs[i] for i in order[s:s + cfg.batch_size]]
                    pre = [p.prefix for p in chunk] * 2
                    steps = [p.chosen for p in chunk] + [p.rejected for p in chunk]
                    with torch.no_grad():
                        ref = self._logps(self.reference, pre, steps)
                    pol = self._logps(model, pre, steps)
                    n = len(chunk)
                    loss_v, rc, rr = dpo_loss(pol[:n], pol[n:], ref[:n], ref[n:],
                                              beta=cfg.beta, label_smoothing=cfg.label_smoothing,
                                              loss_type=cfg.loss_type)
                    loss = loss_v.mean()
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.max_grad_norm is not None:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    self.optimizer.step()
                    losses.append(check_finite(float(loss.detach()), "the DPO loss"))
                    accs.append(float((rc > rr).float().mean()))
                    bar.update(1)
        finally:
            bar.close()
            model.eval()
        return DPOResult(losses, accs, len(losses), len(pairs), time.perf_counter() - start)
