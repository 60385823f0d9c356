"""Compare search methods at equal compute: accuracy against generated tokens per problem.

Used by ``benchmarks/bench_search.py``. Everything goes through the
:class:`~o1search.protocols.Generator` / :class:`~o1search.protocols.Evaluator` protocols, so
the same functions run on the real policy (an :class:`~o1search.search.EngineGenerator` over
an :class:`~o1search.engine.Engine`) and on the scripted toy policy of
:mod:`o1search.testing.toy`.

* :func:`greedy_accuracy` — one greedy completion per problem, judged by the task.
* :func:`run_method` — one method at one budget (sized by
  :func:`o1search.experiments.presets.method_config`) → :class:`MethodResult`.
* :func:`compare_methods` — methods × budgets → JSON-able rows (plotted by
  :mod:`o1search.experiments.plots`).
* :func:`make_evaluator` — the exact verifier (outcome evaluator) or a trained PRM.

Correctness is always the task's own verdict on the decoded chosen completion
(``task.verify(problem, text) >= 0.5``), whatever evaluator guided the search.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from o1search.experiments.presets import METHODS, algorithm_for, method_config
from o1search.search import (
    BestOfNConfig,
    EngineGenerator,
    SamplingConfig,
    Search,
    SearchProblem,
    SearchResult,
    VerifierEvaluator,
    task_answer_fn,
)
from o1search.search.best_of_n import BestOfN

__all__ = [
    "GreedyResult",
    "MethodResult",
    "MethodSpec",
    "compare_methods",
    "greedy_accuracy",
    "make_evaluator",
    "prepare_problems",
    "run_method",
]


# ---------------------------------------------------------------------------- problems
def _generator_of(engine_or_generator: Any, tokenizer: Any, step_delimiter: str,
                  final_prefix: str | None) -> Any:
    """An :class:`EngineGenerator` for an Engine; a Generator unchanged."""
    if callable(getattr(engine_or_generator, "generate", None)):
        return engine_or_generator
    if callable(getattr(engine_or_generator, "expand", None)):
        tok = tokenizer if tokenizer is not None else getattr(engine_or_generator,
                                                              "tokenizer", None)
        return EngineGenerator(engine_or_generator, tok, step_delimiter=step_delimiter,
                               final_prefix=final_prefix)
    raise TypeError(f"expected an Engine or a Generator, got {type(engine_or_generator).__name__}")


def prepare_problems(task: Any, problems: Sequence[Any], tokenizer: Any = None, *,
                     seed: int = 0) -> list[SearchProblem]:
    """Search problems for ``problems``: already-built :class:`SearchProblem` s pass through;
    task problems go through :func:`o1search.search.adapters.problems_from_task` (the prompt
    encoded once, as the policy was trained; a seed derived from ``seed`` and their id).

    Parameters
    ----------
    task : Task
        Provides ``prompt(problem)``.
    problems : sequence of SearchProblem or task Problem
    tokenizer : transformers tokenizer, optional
        Needed for task problems.
    seed : int
        Base seed (a problem's seed depends on it and the problem's id only).

    Returns
    -------
    list of SearchProblem

    Raises
    ------
    ValueError
        No problems, or task problems without a tokenizer.
    """
    problems = list(problems)
    if not problems:
        raise ValueError("no problems given")
    if all(isinstance(p, SearchProblem) for p in problems):
        return problems
    if any(isinstance(p, SearchProblem) for p in problems):
        raise TypeError("problems mixes SearchProblem and task problems")
    if tokenizer is None:
        raise ValueError("task problems need a tokenizer to encode their prompts (or pass "
                         "SearchProblem objects)")
    from o1search.search.adapters import problems_from_task

    # One way to turn task problems into search problems (chat template and chat prompt
    # for a chat model, the tokenizer's own special tokens otherwise), the one search uses.
    return problems_from_task(task, problems, tokenizer, seed=seed)


def _decoder_of(generator: Any, decoder: Any) -> Any:
    dec = decoder if decoder is not None else getattr(generator, "decoder", None)
    if dec is None:
        raise ValueError("cannot decode completions: the generator has no decoder; pass "
                         "decoder=")
    return dec


def _judge(task: Any, problems: Sequence[SearchProblem], results: Sequence[SearchResult],
           decoder: Any) -> list[bool]:
    """The task's verdict on each chosen completion (decoded once)."""
    out = []
    for p, r in zip(problems, results):
        text = r.text if r.text is not None else decoder(list(r.completion))
        out.append(float(task.verify(p.problem, text)) >= 0.5)
    return out


# ---------------------------------------------------------------------------- greedy
@dataclass
class GreedyResult:
    """Greedy decoding on a list of problems.

    Attributes
    ----------
    accuracy : float
        Fraction of problems whose greedy completion the task verifies.
    correct : list of bool
        ``[P]`` per-problem verdicts.
    texts : list of str
        ``[P]`` decoded completions.
    mean_generated_tokens : float
        Mean completion length in tokens.
    results : list of SearchResult
    """

    accuracy: float
    correct: list[bool]
    texts: list[str]
    mean_generated_tokens: float
    results: list[SearchResult] = field(repr=False)


def greedy_accuracy(engine_or_generator: Any, task: Any, problems: Sequence[Any], *,
                    tokenizer: Any = None, max_new_tokens: int = 128, seed: int = 0,
                    decoder: Any = None) -> GreedyResult:
    """Greedy accuracy: one temperature-0 completion per problem, judged by ``task.verify``.

    Parameters
    ----------
    engine_or_generator : Engine or Generator
        An Engine is wrapped in an :class:`EngineGenerator` (step delimiter ``"\\n"``).
    task : Task
        Provides ``verify(problem, text)`` (and ``prompt`` for task problems).
    problems : sequence of SearchProblem or task Problem
    tokenizer : optional
        Encodes task problems (default: the engine's / generator's tokenizer).
    max_new_tokens : int
        Longest completion.
    seed : int
    decoder : callable, optional
        Token ids → text (default: the generator's decoder).

    Returns
    -------
    GreedyResult

    Raises
    ------
    ValueError
        No problems, no way to decode or encode, bad ``max_new_tokens``.
    """
    gen = _generator_of(engine_or_generator, tokenizer, "\n", None)
    tok = tokenizer if tokenizer is not None else getattr(gen, "tokenizer", None)
    sps = prepare_problems(task, problems, tok, seed=seed)
    dec = _decoder_of(gen, decoder)
    cfg = BestOfNConfig(n=1, select="majority", max_completion_tokens=max_new_tokens,
                        sampling=SamplingConfig(temperature=0.0))
    results = Search(BestOfN(cfg), sps, gen, None, decoder=dec).run()
    correct = _judge(task, sps, results, dec)
    texts = [r.text if r.text is not None else dec(list(r.completion)) for r in results]
    return GreedyResult(sum(correct) / len(correct), correct, texts,
                        sum(r.compute.generated_tokens for r in results) / len(results),
                        results)


# ---------------------------------------------------------------------------- one method
@dataclass
class MethodResult:
    """One method at one budget on a batch of problems.

    Attributes
    ----------
    method : str
    token_budget : int or None
        The budget it was sized for (None for greedy).
    accuracy : float
        Fraction of problems whose chosen completion the task verifies.
    correct : list of bool
        ``[P]`` per-problem verdicts.
    mean_generated_tokens, mean_prefilled_tokens, mean_reused_tokens : float
        Per-problem means of the search's compute counters.
    max_generated_tokens : int
        The most any one problem generated.
    generator_calls : int
        ``generate`` calls the whole batch made.
    wall_s : float
        Seconds of the whole run.
    config : dataclass or None
        The algorithm config used.
    results : list of SearchResult
    """

    method: str
    token_budget: int | None
    accuracy: float
    correct: list[bool]
    mean_generated_tokens: float
    mean_prefilled_tokens: float
    mean_reused_tokens: float
    max_generated_tokens: int
    generator_calls: int
    wall_s: float
    config: Any = None
    results: list[SearchResult] = field(default_factory=list, repr=False)

    def row(self, label: str | None = None) -> dict[str, Any]:
        """A JSON-able summary (no per-problem results)."""
        return {
            "method": label or self.method,
            "algorithm": self.method,
            "budget": self.token_budget,
            "accuracy": self.accuracy,
            "num_problems": len(self.correct),
            "num_correct": int(sum(self.correct)),
            "generated_tokens": self.mean_generated_tokens,
            "max_generated_tokens": self.max_generated_tokens,
            "prefilled_tokens": self.mean_prefilled_tokens,
            "reused_tokens": self.mean_reused_tokens,
            "generator_calls": self.generator_calls,
            "wall_s": self.wall_s,
        }


def run_method(method: str, generator: Any, evaluator: Any, task: Any,
               problems: Sequence[Any], *, token_budget: int | None, seed: int = 0,
               tokenizer: Any = None, decoder: Any = None, completion_tokens: float = 32.0,
               config: Any = None, **algo_kwargs: Any) -> MethodResult:
    """Run one search method on a batch of problems and judge its answers.

    Parameters
    ----------
    method : str
        One of :data:`METHODS`.
    generator : Generator or Engine
    evaluator : Evaluator or None
        Guides the search (verifier, PRM); needed by every method but ``greedy`` and
        ``best_of_n`` / ``best_of_n_majority``.
    task : Task
        Judges the chosen completions (``verify``); gives answers for votes
        (``extract_answer``).
    problems : sequence of SearchProblem or task Problem
    token_budget : int or None
        Generated tokens per problem (ignored by ``greedy``).
    seed : int
        Base seed of task problems' seeds (SearchProblems keep theirs).
    tokenizer, decoder : optional
        To encode task problems / decode completions (default: the generator's).
    completion_tokens : float
        Typical completion length, for :func:`method_config`.
    config : dataclass, optional
        Use this config as is instead of :func:`method_config`'s.
    **algo_kwargs
        Overrides passed to :func:`method_config` (``value_source``, ``max_completion_tokens``
        or any config field); for ``greedy``: ``max_new_tokens``.

    Returns
    -------
    MethodResult

    Raises
    ------
    ValueError
        Unknown method, a method that needs an evaluator without one, bad sizes.
    """
    gen = _generator_of(generator, tokenizer, "\n", None)
    tok = tokenizer if tokenizer is not None else getattr(gen, "tokenizer", None)
    sps = prepare_problems(task, problems, tok, seed=seed)
    dec = _decoder_of(gen, decoder)
    stats = getattr(gen, "stats", None)
    calls0 = getattr(stats, "calls", 0)
    start = time.perf_counter()
    if method == "greedy":
        if config is not None:
            raise ValueError("greedy takes no config")
        g = greedy_accuracy(gen, task, sps, decoder=dec,
                            max_new_tokens=int(algo_kwargs.pop("max_new_tokens", 128)))
        if algo_kwargs:
            raise TypeError(f"greedy: unexpected arguments {sorted(algo_kwargs)}")
        results, correct, cfg, budget = g.results, g.correct, None, None
    else:
        cfg = config if config is not None else method_config(
            method, token_budget, completion_tokens=completion_tokens,
            has_evaluator=evaluator is not None, **algo_kwargs)
        budget = token_budget
        if evaluator is None and (not isinstance(cfg, BestOfNConfig)
                                  or cfg.select != "majority"):
            raise ValueError(f"{method} needs an evaluator (a VerifierEvaluator or a PRM)")
        answer_fn = task_answer_fn(task, dec) if callable(getattr(task, "extract_answer",
                                                                  None)) else None
        results = Search(algorithm_for(cfg), sps, gen, evaluator, decoder=dec,
                         answer_fn=answer_fn).run()
        correct = _judge(task, sps, results, dec)
    wall = time.perf_counter() - start
    n = len(results)
    comp = [r.compute for r in results]
    calls = (getattr(stats, "calls", 0) - calls0 if stats is not None
             else max(c.generator_calls for c in comp))
    return MethodResult(
        method=method, token_budget=budget, accuracy=sum(correct) / n, correct=correct,
        mean_generated_tokens=sum(c.generated_tokens for c in comp) / n,
        mean_prefilled_tokens=sum(c.prefilled_tokens for c in comp) / n,
        mean_reused_tokens=sum(c.reused_tokens for c in comp) / n,
        max_generated_tokens=max(c.generated_tokens for c in comp),
        generator_calls=int(calls), wall_s=wall, config=cfg, results=results)


# ---------------------------------------------------------------------------- comparisons
@dataclass(frozen=True)
class MethodSpec:
    """A method to compare, with a label and overrides.

    Attributes
    ----------
    method : str
        One of :data:`METHODS`.
    label : str or None
        Name in the rows and the plot (default ``method``).
    kwargs : dict
        Passed to :func:`run_method` (e.g. ``{"value_source": "rollout"}``).
    """

    method: str
    label: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; use one of {METHODS}")

    @property
    def name(self) -> str:
        """``label`` or ``method``."""
        return self.label or self.method


def compare_methods(generator: Any, evaluator: Any, task: Any, problems: Sequence[Any],
                    methods: Sequence[str | MethodSpec], budgets: Sequence[int], *,
                    seed: int = 0, tokenizer: Any = None, decoder: Any = None,
                    completion_tokens: float | None = None, progress: bool = True
                    ) -> list[dict[str, Any]]:
    """Accuracy against generated tokens per problem, for each method at each budget.

    Methods get the same budgets (generated tokens per problem), so they are compared at
    equal compute. ``greedy`` runs once (its compute is fixed) and gives one row with
    ``budget`` None.

    Parameters
    ----------
    generator : Generator or Engine
    evaluator : Evaluator or None
    task : Task
    problems : sequence of SearchProblem or task Problem
    methods : sequence of str or MethodSpec
    budgets : sequence of int
        Generated tokens per problem (each >= 1).
    seed : int
    tokenizer, decoder : optional
    completion_tokens : float, optional
        Typical completion length for sizing (default: measured by a greedy run).
    progress : bool
        Show a tqdm progress bar (stderr).

    Returns
    -------
    list of dict
        One row per (method, budget): ``method`` (label), ``algorithm``, ``budget``,
        ``accuracy``, ``num_problems``, ``num_correct``, ``generated_tokens`` (mean per
        problem), ``max_generated_tokens``, ``prefilled_tokens``, ``reused_tokens``,
        ``generator_calls``, ``wall_s``, ``config`` (the sized config as a dict) and
        ``correct`` (per-problem verdicts).

    Raises
    ------
    ValueError
        No methods, no budgets, bad budgets, or what :func:`run_method` raises.
    """
    from dataclasses import asdict

    specs = [m if isinstance(m, MethodSpec) else MethodSpec(m) for m in methods]
    if not specs:
        raise ValueError("no methods to compare")
    budgets = list(budgets)
    if not budgets:
        raise ValueError("no budgets given")
    for b in budgets:
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ValueError(f"budgets must be ints >= 1, got {b!r}")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"method labels must be distinct, got {names}")
    gen = _generator_of(generator, tokenizer, "\n", None)
    tok = tokenizer if tokenizer is not None else getattr(gen, "tokenizer", None)
    sps = prepare_problems(task, problems, tok, seed=seed)
    greedy_row = None
    if completion_tokens is None:
        g = run_method("greedy", gen, None, task, sps, token_budget=None, decoder=decoder)
        completion_tokens = max(1.0, g.mean_generated_tokens)
        greedy_row = g
    jobs = [(s, None) if s.method == "greedy" else (s, b) for s in specs
            for b in ([None] if s.method == "greedy" else budgets)]
    rows = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="compare_methods", unit="run")
    try:
        for spec, b in jobs:
            if bar is not None:
                bar.set_postfix_str(f"{spec.name} @ {b}")
            if spec.method == "greedy" and greedy_row is not None and not spec.kwargs:
                res = greedy_row
            else:
                res = run_method(spec.method, gen, evaluator, task, sps, token_budget=b,
                                 decoder=decoder, completion_tokens=completion_tokens,
                                 **spec.kwargs)
            row = res.row(spec.name)
            row["config"] = asdict(res.config) if res.config is not None else None
            row["correct"] = [bool(c) for c in res.correct]
            rows.append(row)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return rows


# ---------------------------------------------------------------------------- evaluators
def make_evaluator(kind: str, task: Any, decoder: Any = None, *, prm: Any = None) -> Any:
    """The evaluator that guides a search.

    Parameters
    ----------
    kind : str
        ``"verifier"``: the task's exact outcome reward (:class:`VerifierEvaluator`; partial
        paths score 0, so step-level search is guided only by finished paths — report such
        runs as verifier-guided). ``"prm"``: a trained process reward model (step values).
    task : Task
    decoder : callable or tokenizer
        For ``"verifier"``.
    prm : ProcessRewardModel
        For ``"prm"`` (e.g. ``ProcessRewardModel.load(path)``).

    Returns
    -------
    Evaluator

    Raises
    ------
    ValueError
        Unknown kind, or a missing decoder / PRM.
    """
    if kind == "verifier":
        if decoder is None:
            raise ValueError("make_evaluator('verifier') needs a decoder or tokenizer")
        return VerifierEvaluator(task, decoder)
    if kind == "prm":
        if prm is None or not callable(getattr(prm, "evaluate", None)):
            raise ValueError("make_evaluator('prm') needs a trained ProcessRewardModel (prm=)")
        return prm
    raise ValueError(f"unknown evaluator kind {kind!r}; use 'verifier' or 'prm'")
