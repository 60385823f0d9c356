"""Automatic process labels by Monte-Carlo rollouts (Math-Shepherd style).

For a sampled solution, every step prefix is a state; from each state the policy rolls out
``k`` completions and a verifier judges them. A step's *soft* label is the fraction of
rollouts that reach a verified answer (an estimate of the probability that the policy
succeeds from there), its *hard* label 1 when any rollout does. The last step of a finished
solution is a terminal state: its label is the solution's own verdict, no rollout needed.

Everything goes through the search layer's :class:`~o1search.protocols.Generator`
protocol, so the same code runs on :class:`~o1search.search.EngineGenerator` (the real
policy; all prefixes × ``k`` of a batch travel in one ``Engine.expand`` call and share the
engine's prefix cache) and on the scripted :class:`~o1search.testing.toy.ToyPolicy`.
Identical step prefixes (two samples that start alike) are rolled out once.

Randomness is counter based: the rollouts of a state are seeded from the problem's seed, the
base ``seed``, the trace and the step, so labels do not depend on batching.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from o1search.reward.evaluators import (
    as_tokens,
    resolve_token_ids,
    step_end_positions,
    text_delimiter,
)
from o1search.reward.prm_train import PRMExample
from o1search.protocols import (
    EvalRequest,
    SamplingParams,
    SearchProblem,
    StepRequest,
    derive_seed,
)

__all__ = ["SampledTrace", "StepLabels", "mc_step_labels", "sample_traces",
           "verify_completions"]


@dataclasses.dataclass(frozen=True)
class SampledTrace:
    """One sampled solution.

    Attributes
    ----------
    problem : SearchProblem
        Prompt tokens, the task problem and its seed.
    completion : tuple of int
        Tokens after the prompt.
    finished : bool
        Whether the completion is complete (EOS / final answer).
    reward : float or None
        The verifier's outcome reward, when it was computed.
    """

    problem: SearchProblem
    completion: tuple[int, ...]
    finished: bool = True
    reward: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.problem, SearchProblem):
            raise TypeError(f"SampledTrace.problem must be a SearchProblem, got "
                            f"{type(self.problem).__name__}")
        object.__setattr__(self, "completion",
                           as_tokens(self.completion, "SampledTrace.completion"))


@dataclasses.dataclass(frozen=True)
class StepLabels:
    """Monte-Carlo labels of every step of one trace.

    Attributes
    ----------
    trace : SampledTrace
    step_ends : tuple of int
        Position (in the completion) of each step's last token.
    successes : tuple of int
        Per step, rollouts that reached a verified answer (terminal step: 1 or 0).
    rollouts : tuple of int
        Per step, rollouts run (terminal step: 1, the trace itself).
    terminal : tuple of bool
        Per step, whether the state was terminal (labelled by the trace's own verdict).
    """

    trace: SampledTrace
    step_ends: tuple[int, ...]
    successes: tuple[int, ...]
    rollouts: tuple[int, ...]
    terminal: tuple[bool, ...]

    @property
    def soft(self) -> tuple[float, ...]:
        """Per step, the fraction of successful rollouts."""
        return tuple(s / r for s, r in zip(self.successes, self.rollouts))

    @property
    def hard(self) -> tuple[float, ...]:
        """Per step, 1.0 when any rollout succeeded, else 0.0."""
        return tuple(1.0 if s > 0 else 0.0 for s in self.successes)

    def to_example(self, *, soft: bool = True) -> PRMExample:
        """A :class:`~o1search.reward.prm.PRMExample` with the soft (default) or hard labels.

        Raises
        ------
        ValueError
            The trace has no step.
        """
        return PRMExample(self.trace.problem.prompt, self.trace.completion,
                          self.soft if soft else self.hard)


def _verify_fn(verifier: Any, decoder: Callable[[Sequence[int]], str] | None
               ) -> Callable[[list[EvalRequest]], list[float]]:
    if callable(getattr(verifier, "evaluate", None)) and not callable(
            getattr(verifier, "verify", None)):
        return lambda reqs: [float(x) for x in verifier.evaluate(reqs)]
    if callable(getattr(verifier, "verify", None)):
        if decoder is None:
            raise ValueError("a Task verifier needs decoder= (token ids -> text); or pass an "
                             "Evaluator such as search.VerifierEvaluator")
        return lambda reqs: [float(verifier.verify(r.problem, decoder(r.completion)))
                             for r in reqs]
    raise TypeError(f"verifier must be an Evaluator (evaluate) or a Task (verify), got "
                    f"{type(verifier).__name__}")


def verify_completions(verifier: Any, items: Sequence[tuple[SearchProblem, Sequence[int], bool]],
                       *, decoder: Callable[[Sequence[int]], str] | None = None) -> list[float]:
    """Outcome rewards of ``(problem, completion, finished)`` triples in one verifier call.

    Parameters
    ----------
    verifier : Evaluator or Task
        An :class:`~o1search.protocols.Evaluator` (e.g. ``VerifierEvaluator``,
        ``ToyVerifier``) or a task with ``verify(problem, text)`` (needs ``decoder``).
    items : sequence of (SearchProblem, completion tokens, finished)
    decoder : callable, optional
        Token ids → text, for a Task verifier.

    Returns
    -------
    list of float
    """
    fn = _verify_fn(verifier, decoder)
    reqs = [EvalRequest(p.problem, p.prompt, tuple(c), bool(f)) for p, c, f in items]
    out = fn(reqs) if reqs else []
    if len(out) != len(reqs):
        raise ValueError(f"verifier returned {len(out)} values for {len(reqs)} requests")
    return out


def sample_traces(generator: Any, problems: Sequence[SearchProblem], n: int, *,
                  sampling: SamplingParams | None = None, max_new_tokens: int = 256,
                  seed: int = 0, verifier: Any = None,
                  decoder: Callable[[Sequence[int]], str] | None = None
                  ) -> list[list[SampledTrace]]:
    """``n`` whole solutions per problem, all in one ``generator.generate`` call.

    Parameters
    ----------
    generator : Generator
    problems : sequence of SearchProblem
    n : int
        Samples per problem (>= 1).
    sampling : SamplingParams, optional
        Temperature / top-p / top-k (default temperature 1); its seed is replaced by one
        derived from each problem's seed and ``seed``.
    max_new_tokens : int
    seed : int
        Base seed (>= 0).
    verifier : Evaluator or Task, optional
        When given, each trace's ``reward`` is filled in (one verifier call).
    decoder : callable, optional
        For a Task verifier.

    Returns
    -------
    list of list of SampledTrace
        ``[len(problems)][n]``.

    Raises
    ------
    TypeError, ValueError
        Bad arguments, or a generator that returns the wrong number of candidates.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    probs = list(problems)
    for i, p in enumerate(probs):
        if not isinstance(p, SearchProblem):
            raise TypeError(f"problems[{i}] is a {type(p).__name__}, not a SearchProblem")
    base = sampling or SamplingParams()
    reqs = [StepRequest(p.prompt, n, dataclasses.replace(base, seed=derive_seed(
        p.seed, "sample_traces", seed)), max_new_tokens, to_end=True) for p in probs]
    outs = generator.generate(reqs) if reqs else []
    _check_outputs(outs, reqs)
    traces = [[SampledTrace(p, c.tokens, c.finished) for c in out]
              for p, out in zip(probs, outs)]
    if verifier is not None:
        flat = [t for ts in traces for t in ts]
        rewards = verify_completions(verifier, [(t.problem, t.completion, t.finished)
                                                for t in flat], decoder=decoder)
        it = iter(rewards)
        traces = [[dataclasses.replace(t, reward=next(it)) for t in ts] for ts in traces]
    return traces


def _check_outputs(outs: Sequence[Any], reqs: Sequence[StepRequest]) -> None:
    if len(outs) != len(reqs):
        raise ValueError(f"generator returned {len(outs)} outputs for {len(reqs)} requests")
    for i, (o, r) in enumerate(zip(outs, reqs)):
        if len(o) != r.n:
            raise ValueError(f"generator returned {len(o)} candidates for request {i} "
                             f"(n={r.n})")


def mc_step_labels(generator: Any, verifier: Any, traces: Iterable[SampledTrace], k: int, *,
                   step_delimiter: str | Sequence[int] = "\n", tokenizer: Any = None,
                   eos_token_ids: Iterable[int] = (), sampling: SamplingParams | None = None,
                   max_new_tokens: int = 256, seed: int = 0,
                   decoder: Callable[[Sequence[int]], str] | None = None,
                   success_threshold: float = 0.5,
                   max_requests_per_call: int | None = None) -> list[StepLabels]:
    """Math-Shepherd process labels: roll out ``k`` completions from every step prefix.

    Parameters
    ----------
    generator : Generator
        The policy (``EngineGenerator``, ``ToyPolicy``, ...). Rollouts use ``to_end=True``.
    verifier : Evaluator or Task
        Judges rollouts: an :class:`~o1search.protocols.Evaluator` or a task with
        ``verify(problem, text)`` (then ``decoder`` is needed).
    traces : iterable of SampledTrace
        The solutions to label (e.g. from :func:`sample_traces`).
    k : int
        Rollouts per step (>= 1).
    step_delimiter : str or sequence of int
        Splits steps exactly as the PRM to be trained will (text needs ``tokenizer``).
    tokenizer : optional
        Tokenizes a text ``step_delimiter`` once.
    eos_token_ids : iterable of int
        Tokens that alone after the last delimiter are not a step (as the PRM's).
    sampling : SamplingParams, optional
        Rollout sampling (default temperature 1); seeds are derived per state.
    max_new_tokens : int
        Rollout length limit.
    seed : int
        Base seed.
    decoder : callable, optional
        Token ids → text for a Task verifier.
    success_threshold : float
        A rollout succeeds when its reward is at least this (rewards of the built-in
        verifiers are 0 or 1).
    max_requests_per_call : int, optional
        Split the rollouts into generator calls of at most this many step prefixes (each
        ``k`` samples); default all in one call.

    Returns
    -------
    list of StepLabels
        One per trace, in order.

    Raises
    ------
    ValueError
        ``k`` < 1, a bad delimiter, a generator answering with the wrong number of samples.
    TypeError
        A trace that is not a SampledTrace, a verifier of the wrong kind.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if max_requests_per_call is not None and max_requests_per_call < 1:
        raise ValueError("max_requests_per_call must be >= 1 or None")
    delim = resolve_token_ids(step_delimiter, tokenizer, "step_delimiter")
    eos = frozenset(int(t) for t in eos_token_ids)
    traces = list(traces)
    for i, t in enumerate(traces):
        if not isinstance(t, SampledTrace):
            raise TypeError(f"traces[{i}] is a {type(t).__name__}, not a SampledTrace")
    verify = _verify_fn(verifier, decoder)
    base = sampling or SamplingParams()

    text, decode = text_delimiter(step_delimiter, tokenizer)
    ends_of = [step_end_positions(t.completion, delim, eos_token_ids=eos, text=text,
                                  decode=decode) for t in traces]
    # Terminal steps: the last step of a finished trace (nothing but EOS after it).
    terminal_of = [[t.finished and j == len(e) - 1 for j in range(len(e))]
                   for t, e in zip(traces, ends_of)]
    # State key -> index of its rollout request; equal prefixes share their rollouts.
    states: dict[tuple[int, ...], int] = {}
    requests: list[tuple[SampledTrace, tuple[int, ...], StepRequest]] = []
    for ti, (t, ends, term) in enumerate(zip(traces, ends_of, terminal_of)):
        for j, (e, is_term) in enumerate(zip(ends, term)):
            if is_term:
                continue
            key = t.problem.prompt + t.completion[:e + 1]
            if key in states:
                continue
            states[key] = len(requests)
            sp = dataclasses.replace(base, seed=derive_seed(t.problem.seed, "mc", seed, ti, j))
            requests.append((t, t.completion[:e + 1],
                             StepRequest(key, k, sp, max_new_tokens, to_end=True)))

    success_of_request: list[int] = []
    chunk = max_requests_per_call or max(len(requests), 1)
    for start in range(0, len(requests), chunk):
        part = requests[start:start + chunk]
        outs = generator.generate([r for _, _, r in part])
        _check_outputs(outs, [r for _, _, r in part])
        evals = [EvalRequest(t.problem.problem, t.problem.prompt, prefix + c.tokens,
                             bool(c.finished))
                 for (t, prefix, _), out in zip(part, outs) for c in out]
        rewards = verify(evals)
        if len(rewards) != len(evals):
            raise ValueError(f"verifier returned {len(rewards)} values for {len(evals)} "
                             "rollouts")
        for i in range(len(part)):
            success_of_request.append(sum(r >= success_threshold
                                          for r in rewards[i * k:(i + 1) * k]))

    # Terminal states are judged by the trace's own verdict (computed here when missing).
    need = [t for t, term in zip(traces, terminal_of) if any(term) and t.reward is None]
    own = verify([EvalRequest(t.problem.problem, t.problem.prompt, t.completion, True)
                  for t in need]) if need else []
    own_reward = {id(t): r for t, r in zip(need, own)}

    out = []
    for t, ends, term in zip(traces, ends_of, terminal_of):
        succ, rolls = [], []
        for e, is_term in zip(ends, term):
            if is_term:
                r = t.reward if t.reward is not None else own_reward[id(t)]
                succ.append(int(r >= success_threshold))
                rolls.append(1)
            else:
                succ.append(success_of_request[states[t.problem.prompt
                                                      + t.completion[:e + 1]]])
                rolls.append(k)
        out.append(StepLabels(t, tuple(ends), tuple(succ), tuple(rolls), tuple(term)))
    return out
