"""Potential-based reward shaping: dense per-step rewards from a value model.

For a trajectory of states ``s_0 .. s_T`` (``s_t`` = prompt + first ``t`` steps) with rewards
``r_0 .. r_{T-1}`` and a potential ``Phi`` (a value model, e.g. a PRM's step values), the shaped
reward of step ``t`` is::

    r'_t = r_t + gamma * Phi(s_{t+1}) - Phi(s_t)

(Ng, Harada & Russell, 1999): the optimal policy is unchanged, and with ``gamma = 1`` and
``Phi(terminal) = 0`` the shaped rewards sum to ``sum(r) - Phi(s_0)``, so an outcome reward
given only at the end becomes dense per-step credit without changing what is optimal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from o1search.reward.evaluators import check_batch

__all__ = ["dense_step_rewards", "outcome_step_rewards", "potential_based_shaping"]


def potential_based_shaping(rewards: Any, potentials: Any, *, gamma: float = 1.0,
                            terminal: bool = True) -> Any:
    """Shaped rewards ``r_t + gamma * Phi(s_{t+1}) - Phi(s_t)``.

    Parameters
    ----------
    rewards : array-like or torch.Tensor
        ``[..., T]`` per-step rewards.
    potentials : array-like or torch.Tensor
        ``[..., T + 1]`` potentials ``Phi(s_0) .. Phi(s_T)``.
    gamma : float
        Discount in ``[0, 1]``.
    terminal : bool
        ``s_T`` is terminal: its potential is taken as 0 whatever was passed (so the shaping
        cannot change the return of a finished episode beyond ``-Phi(s_0)``).

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``[..., T]`` shaped rewards, a tensor when ``rewards`` is one (gradients flow).

    Raises
    ------
    ValueError
        Shapes that do not match, ``gamma`` outside ``[0, 1]``, non-finite values.
    """
    g = float(gamma)
    if not 0.0 <= g <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    is_torch = isinstance(rewards, torch.Tensor)
    if is_torch:
        r = rewards
        phi = torch.as_tensor(potentials, dtype=r.dtype, device=r.device)
    else:
        r = np.asarray(rewards, dtype=np.float64)
        phi = np.asarray(potentials, dtype=np.float64)
    if r.ndim < 1 or tuple(phi.shape) != tuple(r.shape[:-1]) + (r.shape[-1] + 1,):
        raise ValueError(f"potentials must have shape [..., T + 1] for rewards [..., T]; got "
                         f"{tuple(phi.shape)} for {tuple(r.shape)}")
    finite = (torch.isfinite(r).all() and torch.isfinite(phi).all()) if is_torch else (
        np.isfinite(r).all() and np.isfinite(phi).all())
    if not bool(finite):
        raise ValueError("rewards and potentials must be finite")
    nxt = phi[..., 1:]
    if terminal:
        nxt = nxt.clone() if is_torch else nxt.copy()
        nxt[..., -1] = 0.0
    return r + g * nxt - phi[..., :-1]


def outcome_step_rewards(outcome: float, num_steps: int) -> np.ndarray:
    """The sparse reward of an outcome-judged trajectory: 0 for every step but the last.

    Returns
    -------
    numpy.ndarray
        ``[num_steps]`` float64.

    Raises
    ------
    ValueError
        ``num_steps`` < 1.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    r = np.zeros(num_steps)
    r[-1] = float(outcome)
    return r


def dense_step_rewards(value_model: Any, prompts: Sequence[Sequence[int]],
                       completions: Sequence[Sequence[int]], outcomes: Sequence[float], *,
                       gamma: float = 1.0, start_potential: bool = True
                       ) -> list[np.ndarray]:
    """Per-step rewards for learning: each trajectory's outcome reward, shaped by a value
    model's step values as potentials.

    Step ``t``'s potential is the value model's value after step ``t`` (``score_steps``), the
    start state's the value at the last prompt token (or 0 when ``start_potential`` is
    False); the terminal state's potential is 0, so with ``gamma = 1`` the rewards of a
    trajectory sum to ``outcome - Phi(s_0)``.

    Parameters
    ----------
    value_model : object with ``score_steps(prompts, completions)``
        E.g. a :class:`~o1search.reward.prm.ProcessRewardModel`.
    prompts, completions : sequences of token-id sequences (``B`` each)
    outcomes : sequence of float
        ``[B]`` outcome rewards.
    gamma : float
    start_potential : bool
        Use the model's value of the start state as ``Phi(s_0)``.

    Returns
    -------
    list of numpy.ndarray
        ``B`` arrays ``[S_b]``, one reward per step.

    Raises
    ------
    ValueError
        Mismatched lengths; a completion with no step.
    """
    ps, cs = check_batch(prompts, completions)
    outs = [float(o) for o in outcomes]
    if len(outs) != len(ps):
        raise ValueError(f"{len(outs)} outcomes for {len(ps)} trajectories")
    values = value_model.score_steps(ps, cs)
    # An empty completion has no step: scorers give the value at its last prompt token.
    starts = value_model.score_steps(ps, [()] * len(ps)) if start_potential else None
    result = []
    for b, v in enumerate(values):
        v = np.asarray(v, dtype=np.float64)
        if not cs[b]:
            raise ValueError(f"completions[{b}] is empty: no step to reward")
        phi0 = float(np.asarray(starts[b])[-1]) if starts is not None else 0.0
        phi = np.concatenate([[phi0], v])
        result.append(potential_based_shaping(outcome_step_rewards(outs[b], len(v)), phi,
                                              gamma=gamma))
    return result
