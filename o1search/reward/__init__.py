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
