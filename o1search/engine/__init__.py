"""Paged-KV model runner and batched node expansion (``Engine.expand``).

Public names: :class:`Engine` with its request/result dataclasses, the sampling and stop
dataclasses, :class:`KVPool`, :class:`ModelRunner` and the attention-backend registry.
"""

from __future__ import annotations

from o1search.engine.attention import AttentionBackend, TorchAttentionBackend
from o1search.engine.backends import (
    available_attention_backends,
    get_attention_backend,
    register_attention_backend,
)
from o1search.engine.engine import (
    Engine,
    EngineStats,
    ExpandRequest,
    ExpandResult,
    Sample,
    ScoreResult,
)
from o1search.engine.kv_pool import KVPool
from o1search.engine.model_runner import ForwardBatch, ModelRunner
from o1search.engine.sampling import ExcludedSteps, SamplingParams, StopRule

__all__ = [
    "AttentionBackend",
    "Engine",
    "EngineStats",
    "ExcludedSteps",
    "ExpandRequest",
    "ExpandResult",
    "ForwardBatch",
    "KVPool",
    "ModelRunner",
    "Sample",
    "SamplingParams",
    "ScoreResult",
    "StopRule",
    "TorchAttentionBackend",
    "available_attention_backends",
    "get_attention_backend",
    "register_attention_backend",
]
