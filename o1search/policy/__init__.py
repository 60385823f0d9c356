"""Policy initialization: the default character-level Llama policy, loading local
checkpoints, prompt formatting and plain evaluation by generation."""

from __future__ import annotations

from o1search.policy.generation import PolicyEval, evaluate_policy, generate_completions
from o1search.policy.model import (
    SUPPORTED_MODEL_TYPES,
    PolicyConfig,
    build_default_policy,
    default_policy_path,
    encode_prompt,
    format_prompt,
    load_policy,
)
from o1search.policy.tokenizer import build_char_tokenizer

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "PolicyConfig",
    "PolicyEval",
    "build_char_tokenizer",
    "build_default_policy",
    "default_policy_path",
    "encode_prompt",
    "evaluate_policy",
    "format_prompt",
    "generate_completions",
    "load_policy",
]
