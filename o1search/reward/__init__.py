"""Rewards: outcome verifiers and the sandbox that runs model-written code."""

from __future__ import annotations

from o1search.reward.sandbox import SandboxLimits, SandboxResult, run_python
from o1search.reward.verifiers import (
    CodeVerifier,
    ExactMatchVerifier,
    MathAnswerVerifier,
    Verifier,
    VerifyResult,
    extract_final_answer,
    math_equal,
)

__all__ = [
    "CodeVerifier",
    "ExactMatchVerifier",
    "MathAnswerVerifier",
    "SandboxLimits",
    "SandboxResult",
    "Verifier",
    "VerifyResult",
    "extract_final_answer",
    "math_equal",
    "run_python",
]

# Learned rewards and internal guidance (PRM, ORM, Monte-Carlo step labels, shaping).
from o1search.reward.evaluators import (  # noqa: E402
    AGGREGATIONS,
    StepValueEvaluator,
    aggregate_step_values,
    step_end_positions,
)
from o1search.reward.guidance import ConfidenceEvaluator, SelfEvaluator  # noqa: E402
from o1search.reward.mc_labels import (  # noqa: E402
    SampledTrace,
    StepLabels,
    mc_step_labels,
    sample_traces,
)
from o1search.reward.orm import (  # noqa: E402
    ORMTrainConfig,
    OutcomeRewardModel,
    PreferencePair,
    bradley_terry_loss,
    train_orm,
)
from o1search.reward.prm import (  # noqa: E402
    PRMExample,
    PRMTrainConfig,
    ProcessRewardModel,
    RewardTrainResult,
    train_prm,
)
from o1search.reward.tag_prm import TagStepPRM  # noqa: E402
from o1search.reward.shaping import (  # noqa: E402
    dense_step_rewards,
    outcome_step_rewards,
    potential_based_shaping,
)

__all__ += [
    "AGGREGATIONS",
    "ConfidenceEvaluator",
    "ORMTrainConfig",
    "OutcomeRewardModel",
    "PRMExample",
    "PRMTrainConfig",
    "PreferencePair",
    "ProcessRewardModel",
    "TagStepPRM",
    "RewardTrainResult",
    "SampledTrace",
    "SelfEvaluator",
    "StepLabels",
    "StepValueEvaluator",
    "aggregate_step_values",
    "bradley_terry_loss",
    "dense_step_rewards",
    "mc_step_labels",
    "outcome_step_rewards",
    "potential_based_shaping",
    "sample_traces",
    "step_end_positions",
    "train_orm",
    "train_prm",
]
