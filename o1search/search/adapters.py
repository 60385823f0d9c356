"""Adapters between the search protocols and the rest of o1search.

* :class:`EngineGenerator` — a :class:`~o1search.protocols.Generator` over
  :meth:`o1search.engine.Engine.expand`.
* :class:`VerifierEvaluator` — an :class:`~o1search.protocols.Evaluator` giving a task's
  exact outcome reward.
* :func:`make_decoder`, :func:`encode_once`, :func:`problems_from_task`,
  :func:`task_answer_fn` — the only places text and tokens meet: prompts and markers are
  tokenized once before the search, and token ids are decoded only for verifiers, answers
  and display.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from o1search.protocols import (
    Decoder,
    EvalRequest,
    GeneratorStats,
    SearchProblem,
    StepCandidate,
    StepOutput,
    StepRequest,
    derive_seed,
)

__all__ = [
    "CHAT_FINAL_MARKERS",
    "EngineGenerator",
    "VerifierEvaluator",
    "encode_once",
    "make_decoder",
    "problems_from_task",
    "task_answer_fn",
]


def make_decoder(tokenizer: Any, *, skip_special_tokens: bool = True) -> Decoder:
    """Token ids → text with a ``transformers`` tokenizer (special tokens dropped).

    Parameters
    ----------
    tokenizer : object with ``decode(ids, skip_special_tokens=...)``
    skip_special_tokens : bool

    Returns
    -------
    callable
        ``decoder(token_ids) -> str``.

    Raises
    ------
    TypeError
        When ``tokenizer`` has no ``decode``.
    """
    if not callable(getattr(tokenizer, "decode", None)):
        raise TypeError("make_decoder: the tokenizer has no decode method")

    def decode(ids: Sequence[int]) -> str:
        return tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    return decode


def encode_once(tokenizer: Any, text: str) -> tuple[int, ...]:
    """Token ids of ``text`` without special tokens (for revision markers, delimiters).

    Raises
    ------
    ValueError
        When ``text`` encodes to nothing.
    """
    ids = tuple(int(t) for t in tokenizer.encode(text, add_special_tokens=False))
    if not ids:
        raise ValueError(f"encode_once: {text!r} encodes to no tokens")
    return ids


def problems_from_task(task: Any, problems: Sequence[Any], tokenizer: Any, *, seed: int = 0,
                       add_special_tokens: bool = True,
                       encode: Callable[[str], Sequence[int]] | None = None,
                       system_prompt: str | None = None) -> list[SearchProblem]:
    """Tokenize each problem's prompt once and give it its own seed.

    The seed is derived from ``seed`` and the problem's ``id`` (not its position), so a
    problem gets the same search alone as in any batch.

    Parameters
    ----------
    task : Task
        Provides ``prompt(problem)``.
    problems : sequence of Problem
    tokenizer : transformers tokenizer
    seed : int
        Base seed (>= 0).
    add_special_tokens : bool
        Let the tokenizer add BOS etc. (the engine needs a non-empty prefix).
    encode : callable, optional
        ``encode(prompt_text) -> ids`` to use instead of the default. The default is
        :func:`o1search.policy.encode_prompt` (the prompt as one user turn of the chat
        template, with the generation prompt) for a tokenizer with a chat template, else
        ``tokenizer.encode``.
    system_prompt : str, optional
        The chat template's system turn (default: the template's own); ignored without a
        template or with ``encode``.

    With a chat template the prompt text is ``task.chat_prompt(problem)`` when the task has
    one (built-in tasks say in words what they ask), else ``task.prompt(problem)``.

    Returns
    -------
    list of SearchProblem

    Raises
    ------
    ValueError
        A prompt that tokenizes to nothing.
    """
    if encode is None and getattr(tokenizer, "chat_template", None):
        from o1search.policy import encode_prompt

        def encode(t: str) -> list[int]:
            return encode_prompt(tokenizer, t, system_prompt=system_prompt)
    chat = bool(getattr(tokenizer, "chat_template", None)) and callable(
        getattr(task, "chat_prompt", None))
    out = []
    for p in problems:
        text = task.chat_prompt(p) if chat else task.prompt(p)
        ids = (encode(text) if encode is not None
               else tokenizer.encode(text, add_special_tokens=add_special_tokens))
        if not ids:
            raise ValueError(f"the prompt of problem {getattr(p, 'id', p)!r} tokenizes to "
                             "nothing; pass add_special_tokens=True with a BOS token")
        out.append(SearchProblem(tuple(int(t) for t in ids), p,
                                 derive_seed(seed, str(getattr(p, "id", repr(p))))))
    return out


def task_answer_fn(task: Any, decoder: Decoder) -> Any:
    """``answer_fn(problem, completion_tokens)`` → ``task.extract_answer(decoded text)``."""

    def answer(problem: Any, completion: Sequence[int]) -> Hashable | None:
        return task.extract_answer(decoder(completion))

    return answer


#: How chat models state a final answer: a step containing one of these ends the path.
CHAT_FINAL_MARKERS = ("\\boxed{", "answer is", "####", "<answer>")


class EngineGenerator:
    """:class:`~o1search.protocols.Generator` over :meth:`o1search.engine.Engine.expand`.

    A step ends at the step delimiter, at EOS, or after ``max_new_tokens``; a whole
    completion (``to_end``) ends at EOS or the limit. A candidate is *finished* at EOS, when
    it contains a final-answer step (one that starts with ``final_prefix``), or when no room
    is left below the model's maximum positions. Logprobs are the raw policy's (temperature
    1, no truncation), so priors do not depend on the search temperature.

    Parameters
    ----------
    engine : Engine
    tokenizer : optional
        Used once here to encode ``step_delimiter`` / ``final_prefix`` strings, and by
        :meth:`decode`.
    step_delimiter : str or sequence of int
        Ends a step (default ``"\\n"``, the built-in tasks' delimiter).
    final_prefix : str or sequence of int, optional
        A step starting with these tokens (or, for a string, whose text starts with it after
        leading whitespace) states the final answer (e.g. ``"answer"``).
    final_markers : sequence of str, optional
        A step whose text contains any of these states the final answer, the way chat
        models write one (:data:`CHAT_FINAL_MARKERS`: ``\\boxed{``, "answer is", ``####``,
        ``<answer>``); needs the tokenizer.

    Raises
    ------
    ValueError
        Strings without a tokenizer, or strings that encode to nothing.
    """

    def __init__(self, engine: Any, tokenizer: Any = None, *,
                 step_delimiter: str | Sequence[int] = "\n",
                 final_prefix: str | Sequence[int] | None = None,
                 final_markers: Sequence[str] = ()) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.delimiter = self._ids(step_delimiter, "step_delimiter")
        # Strings also travel as strings: the engine matches them on decoded text too.
        self.delimiter_text = step_delimiter if isinstance(step_delimiter, str) else None
        self.final_prefix = (None if final_prefix is None
                             else self._ids(final_prefix, "final_prefix"))
        self.final_text = final_prefix if isinstance(final_prefix, str) else None
        markers = tuple(final_markers)
        if any(not isinstance(m, str) or not m for m in markers):
            raise ValueError("EngineGenerator: final_markers must be non-empty strings")
        if markers and tokenizer is None:
            raise ValueError("EngineGenerator: final_markers need a tokenizer")
        self.final_markers = markers
        self.stats = GeneratorStats()
        self.max_positions = int(getattr(engine, "max_positions", 2**31 - 1))

    def _ids(self, x: str | Sequence[int], what: str) -> tuple[int, ...]:
        if isinstance(x, str):
            if self.tokenizer is None:
                raise ValueError(f"EngineGenerator: a string {what} needs a tokenizer; pass "
                                 "token ids instead")
            return encode_once(self.tokenizer, x)
        ids = tuple(int(t) for t in x)
        if not ids:
            raise ValueError(f"EngineGenerator: {what} is empty")
        return ids

    @property
    def decoder(self) -> Decoder | None:
        """:meth:`decode` when there is a tokenizer, else None (used by :class:`Search`)."""
        return self.decode if self.tokenizer is not None else None

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` (special tokens dropped); needs the tokenizer."""
        if self.tokenizer is None:
            raise ValueError("EngineGenerator.decode needs a tokenizer")
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def _has_final(self, tokens: Sequence[int], at_step_start: bool) -> bool:
        if (self.final_markers or self.final_text is not None) and self._has_final_text(tokens):
            return True
        fp = self.final_prefix
        if fp is None:
            return False
        d, n, m = self.delimiter, len(tokens), len(fp)
        starts = [0] if at_step_start else []
        starts += [i + len(d) for i in range(n - len(d) + 1)
                   if tuple(tokens[i:i + len(d)]) == d]
        return any(tuple(tokens[s:s + m]) == fp for s in starts if s + m <= n)

    def _has_final_text(self, tokens: Sequence[int]) -> bool:
        """The text test of :meth:`_has_final`: a marker anywhere, or a segment (between
        delimiters) that starts with the final prefix."""
        text = self.tokenizer.decode(list(tokens), skip_special_tokens=True)
        if any(m in text for m in self.final_markers):
            return True
        if self.final_text is None:
            return False
        parts = text.split(self.delimiter_text) if self.delimiter_text else [text]
        return any(p.lstrip().startswith(self.final_text) for p in parts)

    def generate(self, requests: Sequence[StepRequest]) -> list[StepOutput]:
        """Expand every request in one :meth:`Engine.expand` call.

        Parameters
        ----------
        requests : sequence of StepRequest

        Returns
        -------
        list of StepOutput
            One per request with ``n`` candidates and its prefill / cache-hit counts.

        Raises
        ------
        ValueError, TypeError, o1search.OutOfPagesError
            From the engine (bad token ids, a pool too small).
        """
        from o1search.engine import ExpandRequest, StopRule

        start = time.perf_counter()
        reqs = list(requests)
        todo, out = [], [None] * len(reqs)
        for i, r in enumerate(reqs):
            if not isinstance(r, StepRequest):
                raise TypeError(f"requests[{i}] is a {type(r).__name__}, not a StepRequest")
            if len(r.prefix) >= self.max_positions:
                # No room to generate: a finished, empty step instead of an engine error.
                out[i] = StepOutput(tuple(StepCandidate((), 0.0, True, "length")
                                          for _ in range(r.n)))
                continue
            delim = self.delimiter_text if self.delimiter_text is not None else self.delimiter
            stop = StopRule(step_delimiter=None if r.to_end else delim,
                            stop_at_eos=True, max_new_tokens=r.max_new_tokens)
            exclude = None
            if r.exclude and not r.sampling.greedy:
                from o1search.engine import ExcludedSteps

                exclude = ExcludedSteps(r.exclude)
            todo.append((i, ExpandRequest(r.prefix, r.n, r.sampling, stop, exclude)))
        results = self.engine.expand([e for _, e in todo]) if todo else []
        gen = 0
        for (i, _), res in zip(todo, results):
            r = reqs[i]
            cands = []
            for s in res.samples:
                toks = tuple(int(t) for t in s.tokens)
                gen += len(toks)
                full = len(r.prefix) + len(toks) >= self.max_positions
                reason = s.finish_reason
                finished = reason == "eos" or full
                if not finished and self._has_final(toks, at_step_start=True):
                    finished, reason = True, "answer"
                cands.append(StepCandidate(toks, float(sum(s.raw_logprobs)), finished, reason,
                                           tuple(float(x) for x in s.logprobs)))
            out[i] = StepOutput(tuple(cands), prefilled_tokens=int(res.prefilled_tokens),
                                reused_tokens=int(res.cached_tokens))
            self.stats.prefilled_tokens += int(res.prefilled_tokens)
            self.stats.reused_tokens += int(res.cached_tokens)
        self.stats.calls += 1
        self.stats.requests += len(reqs)
        self.stats.samples += sum(r.n for r in reqs)
        self.stats.generated_tokens += gen
        self.stats.wall_time_s += time.perf_counter() - start
        return out  # type: ignore[return-value]


class VerifierEvaluator:
    """:class:`~o1search.protocols.Evaluator` with a task's exact outcome reward.

    Decodes each completion once and calls ``task.verify(problem, text)``.

    Parameters
    ----------
    task : Task
        Provides ``verify(problem, completion_text) -> float`` in [0, 1].
    decoder : callable or tokenizer
        Token ids → text (a tokenizer is wrapped with :func:`make_decoder`).
    partial_value : float, optional
        Value of an unfinished path. None (default): verify its text as is (a partial trace
        has no answer line, so the built-in tasks give 0).

    Raises
    ------
    ValueError
        ``partial_value`` outside [0, 1].
    """

    def __init__(self, task: Any, decoder: Any, *, partial_value: float | None = None) -> None:
        if not callable(getattr(task, "verify", None)):
            raise TypeError("VerifierEvaluator: task must have verify(problem, text)")
        self.task = task
        self.decode = decoder if callable(decoder) and not hasattr(decoder, "decode") \
            else make_decoder(decoder)
        if partial_value is not None and not 0.0 <= float(partial_value) <= 1.0:
            raise ValueError(f"VerifierEvaluator: partial_value must be in [0, 1], got "
                             f"{partial_value}")
        self.partial_value = partial_value
        self.calls = 0
        self.evaluated = 0

    def evaluate(self, requests: Sequence[EvalRequest]) -> list[float]:
        """One reward per request (1.0 correct, 0.0 wrong for the built-in tasks).

        Raises
        ------
        TypeError
            A request that is not an EvalRequest, or a problem the task cannot verify.
        """
        out = []
        for i, r in enumerate(requests):
            if not isinstance(r, EvalRequest):
                raise TypeError(f"requests[{i}] is a {type(r).__name__}, not an EvalRequest")
            if not r.finished and self.partial_value is not None:
                out.append(float(self.partial_value))
                continue
            out.append(float(self.task.verify(r.problem, self.decode(r.completion))))
        self.calls += 1
        self.evaluated += len(out)
        return out
