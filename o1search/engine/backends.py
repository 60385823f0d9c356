"""Registry of the paged attention backends, and the function that chooses one.

This is the one module that knows every backend: the interface and the torch backends live in
:mod:`o1search.engine.attention`, the Triton and flash-attn ones in
:mod:`o1search.engine.triton_backend`, and each of those imports only the interface. The
``triton``/``flash_attn`` modules are imported on first use, because their kernels need
optional extras (``triton``, ``flash-attn``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from o1search.engine.attention import (
    AttentionBackend,
    TorchAttentionBackend,
    TorchCascadeAttentionBackend,
)

__all__ = [
    "available_attention_backends",
    "get_attention_backend",
    "register_attention_backend",
]


def _triton_backend() -> AttentionBackend:
    # Imported on first use: the kernels need triton, which is an optional extra.
    from o1search.engine.triton_backend import TritonAttentionBackend

    return TritonAttentionBackend()


def _flash_attn_backend() -> AttentionBackend:
    from o1search.engine.triton_backend import FlashAttnBackend

    return FlashAttnBackend()


_REGISTRY: dict[str, Callable[[], AttentionBackend]] = {
    "torch": TorchAttentionBackend,
    "torch_cascade": TorchCascadeAttentionBackend,
    "triton": _triton_backend,
    "flash_attn": _flash_attn_backend,
}


def register_attention_backend(name: str, factory: Callable[[], AttentionBackend]) -> None:
    """Register (or replace) a backend under ``name``.

    Parameters
    ----------
    name : str
        Name passed to :func:`get_attention_backend` (e.g. ``"triton"``).
    factory : callable
        Called with no arguments; returns an :class:`AttentionBackend`. It may raise
        ``ImportError``/``RuntimeError`` when the backend cannot run here.
    """
    if not name or name == "auto":
        raise ValueError(f"invalid backend name {name!r}")
    _REGISTRY[name] = factory


def available_attention_backends() -> list[str]:
    """Names of the registered backends (whether they can run here or not)."""
    return sorted(_REGISTRY)


def get_attention_backend(name: str = "auto", device: torch.device | str | None = None
                          ) -> AttentionBackend:
    """Return the backend called ``name``.

    Parameters
    ----------
    name : str
        ``"torch"``, ``"triton"``, ``"flash_attn"`` or any registered name, or ``"auto"``:
        the first of ``triton``, ``flash_attn`` that loads on a CUDA ``device``, else
        ``torch_cascade`` (the torch backend with shared-prefix decode).
    device : torch.device or str, optional
        Device the caches live on (only ``"auto"`` looks at it).

    Returns
    -------
    AttentionBackend

    Raises
    ------
    ValueError
        Unknown name.
    RuntimeError
        The backend is registered but cannot run here (its factory failed).
    """
    if name == "auto":
        dev = torch.device(device) if device is not None else torch.device("cpu")
        if dev.type == "cuda":
            for candidate in ("triton", "flash_attn"):
                if candidate in _REGISTRY:
                    try:
                        return _REGISTRY[candidate]()
                    except (ImportError, RuntimeError):
                        continue
        return TorchCascadeAttentionBackend()
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown attention backend {name!r}; registered: {available_attention_backends()} "
            "(or 'auto')")
    try:
        return _REGISTRY[name]()
    except ImportError as exc:
        raise RuntimeError(f"attention backend {name!r} cannot be loaded here: {exc}") from exc
