"""Selection rules: plain functions of numbers, tunables after ``*``.

They know nothing of trees, models or generators, so each is tested by hand on its own and
reused by every algorithm (best-of-N picks with them; MCTS makes priors with them).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

__all__ = [
    "best_index",
    "logprob_priors",
    "majority_vote",
    "vote_totals",
    "weighted_vote",
]


def _finite_list(xs: Sequence[float], what: str) -> list[float]:
    out = []
    for i, x in enumerate(xs):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise TypeError(f"{what}[{i}] must be a real number, got {type(x).__name__}")
        if not math.isfinite(x):
            raise ValueError(f"{what}[{i}] is not finite ({x})")
        out.append(float(x))
    return out


def best_index(scores: Sequence[float]) -> int:
    """Index of the largest score; ties go to the earliest.

    Parameters
    ----------
    scores : sequence of float, shape [N]
        Finite numbers, N >= 1.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        Empty input or a non-finite score.
    """
    s = _finite_list(scores, "scores")
    if not s:
        raise ValueError("best_index: no scores to choose from")
    best = 0
    for i, x in enumerate(s):
        if x > s[best]:
            best = i
    return best


def vote_totals(answers: Sequence[Hashable | None],
                weights: Sequence[float] | None = None) -> dict[Hashable, float]:
    """Sum of weights per answer (weight 1 each without ``weights``); ``None`` answers skipped.

    Parameters
    ----------
    answers : sequence of hashable or None, shape [N]
    weights : sequence of float, shape [N], optional
        Finite, >= 0.

    Returns
    -------
    dict
        answer → total, in order of first appearance.

    Raises
    ------
    ValueError
        Mismatched lengths or a negative / non-finite weight.
    """
    if weights is None:
        w = [1.0] * len(answers)
    else:
        w = _finite_list(weights, "weights")
        if len(w) != len(answers):
            raise ValueError(f"vote_totals: {len(answers)} answers but {len(w)} weights")
        if any(x < 0 for x in w):
            raise ValueError("vote_totals: weights must be >= 0")
    totals: dict[Hashable, float] = {}
    for a, x in zip(answers, w):
        if a is None:
            continue
        totals[a] = totals.get(a, 0.0) + x
    return totals


def _vote(answers: Sequence[Hashable | None], weights: Sequence[float] | None,
          tiebreak: Sequence[float] | None) -> int:
    if not answers:
        raise ValueError("vote: no samples to choose from")
    tb = None if tiebreak is None else _finite_list(tiebreak, "tiebreak")
    if tb is not None and len(tb) != len(answers):
        raise ValueError(f"vote: {len(answers)} answers but {len(tb)} tiebreak scores")
    totals = vote_totals(answers, weights)
    if not totals:
        # Nobody stated an answer: fall back to the best tiebreak score (or the first).
        return best_index(tb) if tb is not None else 0
    top = max(totals.values())
    # The winning answer is the first (in sample order) to reach the top total; exact float
    # ties are rare with weights and deliberate with counts.
    winner = next(a for a, t in totals.items() if t == top)
    members = [i for i, a in enumerate(answers) if a == winner]
    if tb is None:
        return members[0]
    return members[best_index([tb[i] for i in members])]


def majority_vote(answers: Sequence[Hashable | None], *,
                  tiebreak: Sequence[float] | None = None) -> int:
    """Self-consistency: the sample whose answer is stated most often.

    Parameters
    ----------
    answers : sequence of hashable or None, shape [N]
        Extracted final answers; ``None`` (no answer) never wins.
    tiebreak : sequence of float, shape [N], optional
        Among the samples with the winning answer, return the one with the highest tiebreak
        score (e.g. its reward); default the first.

    Returns
    -------
    int
        Index of the chosen sample. Answers tied on votes: the one that appears first wins.
        When no sample has an answer: the best tiebreak score, else 0.

    Raises
    ------
    ValueError
        Empty input or mismatched lengths.
    """
    return _vote(answers, None, tiebreak)


def weighted_vote(answers: Sequence[Hashable | None], weights: Sequence[float], *,
                  tiebreak: Sequence[float] | None = None) -> int:
    """Weighted majority: the answer with the largest total weight (e.g. summed rewards).

    Parameters
    ----------
    answers : sequence of hashable or None, shape [N]
    weights : sequence of float, shape [N]
        Finite, >= 0 (e.g. ORM / PRM scores).
    tiebreak : sequence of float, shape [N], optional
        Representative among the winning answer's samples (default: ``weights``).

    Returns
    -------
    int
        Index of the chosen sample.

    Raises
    ------
    ValueError
        Empty input, mismatched lengths, or a bad weight.
    """
    return _vote(answers, weights, weights if tiebreak is None else tiebreak)


def logprob_priors(logprobs: Sequence[float], lengths: Sequence[int] | None = None, *,
                   temperature: float = 1.0) -> list[float]:
    """Priors over sibling steps: softmax of (length-normalized) log-probabilities.

    Long steps have lower total log-probability just for being long; dividing by the length
    keeps priors comparable between steps of different lengths.

    Parameters
    ----------
    logprobs : sequence of float, shape [K]
        Total log-probability of each sibling step.
    lengths : sequence of int, shape [K], optional
        Token counts; each logprob is divided by ``max(length, 1)``. None: no normalization.
    temperature : float
        Softmax temperature (> 0); larger flattens the priors.

    Returns
    -------
    list of float, shape [K]
        Non-negative, summing to 1 (empty for K = 0).

    Raises
    ------
    ValueError
        Mismatched lengths, non-finite values or ``temperature <= 0``.
    """
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)
            and temperature > 0):
        raise ValueError(f"logprob_priors: temperature must be finite and > 0, got "
                         f"{temperature!r}")
    lp = _finite_list(logprobs, "logprobs")
    if lengths is not None:
        if len(lengths) != len(lp):
            raise ValueError(f"logprob_priors: {len(lp)} logprobs but {len(lengths)} lengths")
        lp = [x / max(int(n), 1) for x, n in zip(lp, lengths)]
    if not lp:
        return []
    z = [x / temperature for x in lp]
    m = max(z)
    e = [math.exp(x - m) for x in z]
    s = sum(e)
    return [x / s for x in e]
