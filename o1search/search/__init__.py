"""Search over reasoning steps: best-of-N, step-level beam search, MCTS, DVTS, lookahead
search and sequential revision.

Algorithms are separate from the model: they see only a :class:`Generator` (step
continuations of token prefixes) and an :class:`Evaluator` (values of paths), exchange the
frozen dataclasses of :mod:`o1search.protocols`, run a batch of problems in lockstep
(:class:`Search`), and return one :class:`SearchResult` per problem with its tree and its
compute. :class:`EngineGenerator` and :class:`VerifierEvaluator` connect them to
``o1search.engine`` and ``o1search.tasks``; :mod:`o1search.testing.toy` is a scripted policy
with a known best answer (for tests and examples).
"""

from __future__ import annotations

from o1search.search.adapters import (
    EngineGenerator,
    VerifierEvaluator,
    encode_once,
    make_decoder,
    problems_from_task,
    task_answer_fn,
)
from o1search.protocols import (
    EvalRequest,
    Evaluator,
    Generator,
    GeneratorStats,
    SearchCompute,
    SearchProblem,
    SearchResult,
    StepCandidate,
    StepOutput,
    StepRequest,
    derive_seed,
)
from o1search.search.algorithm import (
    Algorithm,
    Choice,
    Evaluate,
    Generate,
    ProblemState,
)
from o1search.search.beam import BeamSearch, beam_search, dvts, lookahead_search
from o1search.search.best_of_n import BestOfN, best_of_n
from o1search.search.config import (
    BeamConfig,
    BestOfNConfig,
    DVTSConfig,
    LookaheadConfig,
    MCTSConfig,
    RevisionConfig,
    SamplingConfig,
)
from o1search.search.loop import Search
from o1search.search.mcts import MCTS, mcts
from o1search.search.revision import SequentialRevision, sequential_revision
from o1search.search.selection import (
    best_index,
    logprob_priors,
    majority_vote,
    vote_totals,
    weighted_vote,
)

__all__ = [
    "Algorithm",
    "BeamConfig",
    "BeamSearch",
    "BestOfN",
    "BestOfNConfig",
    "Choice",
    "DVTSConfig",
    "EngineGenerator",
    "EvalRequest",
    "Evaluate",
    "Evaluator",
    "Generate",
    "Generator",
    "GeneratorStats",
    "LookaheadConfig",
    "MCTS",
    "MCTSConfig",
    "ProblemState",
    "RevisionConfig",
    "SamplingConfig",
    "Search",
    "SearchCompute",
    "SearchProblem",
    "SearchResult",
    "SequentialRevision",
    "StepCandidate",
    "StepOutput",
    "StepRequest",
    "VerifierEvaluator",
    "beam_search",
    "best_index",
    "best_of_n",
    "derive_seed",
    "dvts",
    "encode_once",
    "logprob_priors",
    "lookahead_search",
    "majority_vote",
    "make_decoder",
    "mcts",
    "problems_from_task",
    "sequential_revision",
    "task_answer_fn",
    "vote_totals",
    "weighted_vote",
]
