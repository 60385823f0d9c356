"""What every step-level scorer shares: where steps end, how step values aggregate, and the
search layer's :class:`~o1search.protocols.Evaluator` protocol on top of ``score_steps``.

A *step* of a completion ends at the last token of each step delimiter occurrence (the
delimiter belongs to the step it ends, as in :class:`~o1search.engine.StopRule`); a delimiter
given as text also ends a step at the token that completes it in the decoded step, as the
engine does (tokenizers that merge "\n\n" into one token never emit the lone "\n" id). Tokens after
the last delimiter form one more, unfinished step, unless they are only EOS tokens (the
end-of-sequence marker is not a reasoning step). The value of a step is a number in
``[0, 1]`` read at its last token: a prediction that the path up to there leads to a correct
answer.

Every scorer (:class:`~o1search.reward.prm.ProcessRewardModel`, the internal-guidance
evaluators) subclasses :class:`StepValueEvaluator`, implements ``score_steps`` and inherits
``evaluate``: step values aggregated into one path value (``last``, ``min``, ``product`` or
``mean``).
"""

from __future__ import annotations

import abc
import functools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from o1search._tokens import as_token_ids, ends_with_text
import numpy as np

__all__ = [
    "AGGREGATIONS",
    "StepValueEvaluator",
    "aggregate_step_values",
    "as_tokens",
    "resolve_token_ids",
    "step_end_positions",
    "text_delimiter",
]

AGGREGATIONS = ("last", "min", "product", "mean")


def as_tokens(tokens: Any, what: str) -> tuple[int, ...]:
    """``tokens`` as a tuple of token ids (see `o1search._tokens.as_token_ids`)."""
    return as_token_ids(tokens, what)


def resolve_token_ids(value: str | Sequence[int], tokenizer: Any, what: str) -> tuple[int, ...]:
    """Token ids of a marker given as text (tokenized once, no special tokens) or as ids.

    Raises
    ------
    ValueError
        Text without a tokenizer, or a marker that is empty / encodes to nothing.
    """
    if isinstance(value, str):
        if tokenizer is None:
            raise ValueError(f"{what} is text ({value!r}) but no tokenizer was given; pass "
                             "token ids instead")
        ids = tuple(int(t) for t in tokenizer.encode(value, add_special_tokens=False))
    else:
        ids = as_tokens(value, what)
    if not ids:
        raise ValueError(f"{what} is empty (or encodes to no tokens)")
    return ids


def step_end_positions(completion: Sequence[int], delimiter: Sequence[int], *,
                       eos_token_ids: Iterable[int] = (), offset: int = 0,
                       text: str | None = None,
                       decode: Callable[[list[int]], str] | None = None) -> list[int]:
    """Positions of the last token of every step of ``completion``.

    Parameters
    ----------
    completion : sequence of int
        Tokens after the prompt.
    delimiter : sequence of int
        The step delimiter (non-empty).
    eos_token_ids : iterable of int
        Tokens that, alone after the last delimiter, do not form a step.
    offset : int
        Added to every position (``len(prompt)`` gives positions in prompt + completion).
    text, decode : optional
        A text delimiter and the tokenizer's decode: a step also ends at the token that
        completes ``text`` in the decoded step (exactly where the engine stops a step, so a
        tokenizer that merges "\n\n" into one token splits the same way in both).

    Returns
    -------
    list of int
        Increasing positions; empty when the completion has no step.
    """
    d = tuple(delimiter)
    if not d:
        raise ValueError("step delimiter is empty")
    toks = list(completion)
    n, m = len(toks), len(d)
    ends = []
    if text is not None and decode is not None:
        start = 0
        for i in range(n):
            # As the engine: the step so far ends in the delimiter's ids or completes its text.
            if (i + 1 - start >= m and tuple(toks[i + 1 - m:i + 1]) == d) or \
                    ends_with_text(toks[start:i + 1], text, decode):
                ends.append(i)
                start = i + 1
    else:
        i = 0
        while i + m <= n:
            if tuple(toks[i:i + m]) == d:
                ends.append(i + m - 1)
                i += m  # occurrences do not overlap: a delimiter ends one step only
            else:
                i += 1
    last = ends[-1] if ends else -1
    eos = set(eos_token_ids)
    tail = toks[last + 1:]
    if tail and not all(t in eos for t in tail):
        # The tail's own trailing EOS is not part of the step's content: score at the last
        # real token so a finished and an unfinished copy of the step get the same value.
        j = n - 1
        while toks[j] in eos:
            j -= 1
        ends.append(j)
    return [e + offset for e in ends]


def text_delimiter(step_delimiter: str | Sequence[int], tokenizer: Any
                   ) -> tuple[str | None, Callable[[list[int]], str] | None]:
    """``(text, decode)`` for :func:`step_end_positions` when ``step_delimiter`` is text and
    ``tokenizer`` can decode (special tokens kept, as the engine decodes); else
    ``(None, None)``: the delimiter's ids alone end steps."""
    dec = getattr(tokenizer, "decode", None)
    if not isinstance(step_delimiter, str) or not callable(dec):
        return None, None

    @functools.lru_cache(maxsize=65536)
    def decode_window(ids: tuple[int, ...]) -> str:
        return dec(list(ids), skip_special_tokens=False)

    def decode(ids: list[int]) -> str:
        # Windows of len(text) + 1 tokens repeat across paths and searches: decode each once.
        return decode_window(tuple(ids))

    return step_delimiter, decode


def aggregate_step_values(values: Sequence[float] | np.ndarray, how: str) -> float:
    """One path value from its step values.

    Parameters
    ----------
    values : sequence of float
        ``[S]`` step values in ``[0, 1]`` (S >= 1).
    how : str
        ``"last"`` (value of the newest step), ``"min"`` (the weakest step), ``"product"``
        (all steps right, if independent) or ``"mean"``.

    Returns
    -------
    float in [0, 1]

    Raises
    ------
    ValueError
        An unknown ``how`` or no values.
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}; use one of {AGGREGATIONS}")
    v = [float(x) for x in np.asarray(values, dtype=np.float64).reshape(-1)]
    if not v:
        raise ValueError("cannot aggregate an empty list of step values")
    if how == "last":
        return v[-1]
    if how == "min":
        return min(v)
    if how == "product":
        return math.prod(v)
    return sum(v) / len(v)


class StepValueEvaluator(abc.ABC):
    """Base of step scorers; an :class:`~o1search.protocols.Evaluator`.

    Subclasses implement :meth:`score_steps`; :meth:`evaluate` aggregates its step values.

    Parameters
    ----------
    step_delimiter : tuple of int
        Ends a step.
    aggregation : str
        One of :data:`AGGREGATIONS`.
    eos_token_ids : iterable of int
        Not a step when alone after the last delimiter.
    step_text, decode : optional
        A text delimiter and a decode function (see :func:`text_delimiter`): steps then also
        end where the delimiter's text completes, as in the engine.
    """

    def __init__(self, step_delimiter: tuple[int, ...], aggregation: str = "min",
                 eos_token_ids: Iterable[int] = (), *, step_text: str | None = None,
                 decode: Callable[[list[int]], str] | None = None) -> None:
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}; use one of {AGGREGATIONS}")
        self.step_delimiter = tuple(step_delimiter)
        if not self.step_delimiter:
            raise ValueError("step_delimiter is empty")
        self.aggregation = aggregation
        self.eos_token_ids = frozenset(int(t) for t in eos_token_ids)
        self.step_text = step_text if decode is not None else None
        self._decode = decode if step_text is not None else None
        self.calls = 0
        self.evaluated = 0

    def step_ends(self, prompt: Sequence[int], completion: Sequence[int]) -> list[int]:
        """Positions (in ``prompt + completion``) of the last token of each step; when the
        completion has no step, the last prompt token (the value of the start state)."""
        ends = step_end_positions(completion, self.step_delimiter,
                                  eos_token_ids=self.eos_token_ids, offset=len(prompt),
                                  text=self.step_text, decode=self._decode)
        return ends or [len(prompt) - 1]

    @abc.abstractmethod
    def score_steps(self, prompts: Sequence[Sequence[int]],
                    completions: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Step values of each path.

        Parameters
        ----------
        prompts, completions : sequences of token-id sequences (same length ``B``)

        Returns
        -------
        list of numpy.ndarray
            ``B`` float64 arrays ``[S_b]`` in ``[0, 1]``, one value per position of
            :meth:`step_ends`.
        """

    def evaluate(self, requests: Sequence[Any]) -> list[float]:
        """One aggregated value in ``[0, 1]`` per :class:`~o1search.protocols.EvalRequest`.

        Raises
        ------
        TypeError
            A request without ``prompt`` / ``completion`` token ids.
        """
        reqs = check_requests(requests)
        self.calls += 1
        if not reqs:
            return []
        values = self.score_steps([r.prompt for r in reqs], [r.completion for r in reqs])
        self.evaluated += len(reqs)
        return [aggregate_step_values(v, self.aggregation) for v in values]


def check_requests(requests: Sequence[Any]) -> list[Any]:
    """``requests`` as a list, each with ``prompt`` and ``completion`` token ids.

    Duck-typed, so any object with those two fields (not only
    :class:`~o1search.protocols.EvalRequest`) can be scored.

    Raises
    ------
    TypeError
        A request without ``prompt`` / ``completion``.
    """
    reqs = list(requests)
    for i, r in enumerate(reqs):
        if not (hasattr(r, "prompt") and hasattr(r, "completion")):
            raise TypeError(f"requests[{i}] is a {type(r).__name__}, not an EvalRequest")
    return reqs


def check_batch(prompts: Sequence[Any], completions: Sequence[Any]
                ) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Validated ``(prompts, completions)`` as token tuples (prompts non-empty)."""
    prompts, completions = list(prompts), list(completions)
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    ps = [as_tokens(p, f"prompts[{i}]") for i, p in enumerate(prompts)]
    cs = [as_tokens(c, f"completions[{i}]") for i, c in enumerate(completions)]
    for i, p in enumerate(ps):
        if not p:
            raise ValueError(f"prompts[{i}] is empty (a path needs at least one prompt token)")
    return ps, cs
