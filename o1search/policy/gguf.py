"""GGUF files as ordinary ``transformers`` checkpoints.

Many chat models ship as GGUF (llama.cpp's format). ``transformers`` reads one with
``from_pretrained(folder, gguf_file=name)`` (it needs the ``gguf`` and ``accelerate``
packages) and dequantizes its tensors, but marks the model as quantized and refuses to save
it. :func:`convert_gguf` loads it, moves the dequantized weights into a plain model of the
same configuration and writes an ordinary local checkpoint (atomically, see
:mod:`o1search.checkpoint`) that :func:`o1search.policy.load_policy` and the engine load like
any other. Nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["convert_gguf"]


def convert_gguf(gguf_path: str | os.PathLike[str], out: str | os.PathLike[str], *,
                 dtype: str = "float32", overwrite: bool = False) -> Path:
    """Dequantize a GGUF model file into a ``transformers`` checkpoint folder.

    Parameters:
        gguf_path: the ``.gguf`` file (model weights, configuration and tokenizer).
        out: the checkpoint folder to write (created; an earlier output of ours replaced).
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        overwrite: as in :func:`o1search.checkpoint.save_checkpoint`.

    Returns:
        ``out``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a GGUF file, or an unknown dtype.
        ImportError: ``gguf`` or ``accelerate`` is not installed.
    """
    import torch

    src = Path(os.fspath(gguf_path)).expanduser()
    if not src.is_file():
        raise FileNotFoundError(f"no GGUF file at {str(src)!r}")
    with open(src, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError(f"{str(src)!r} is not a GGUF file (no GGUF magic)")
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in dtypes:
        raise ValueError(f"dtype must be one of {sorted(dtypes)}, got {dtype!r}")
    for module in ("gguf", "accelerate"):
        try:
            __import__(module)
        except ImportError as exc:
            raise ImportError(f"reading GGUF needs the {module!r} package "
                              f"(pip install {module})") from exc
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from o1search.checkpoint import save_checkpoint

    folder, name = str(src.parent), src.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtypes[dtype])
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")  # the weights are dequantized already
    model = AutoModelForCausalLM.from_config(config, dtype=dtypes[dtype])
    result = model.load_state_dict(loaded.state_dict(), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{str(src)!r}: the dequantized tensors do not match the model's "
                         f"(missing {result.missing_keys[:5]}, unexpected "
                         f"{result.unexpected_keys[:5]})")
    model.generation_config = loaded.generation_config
    del loaded
    return save_checkpoint(out, model.eval(), tokenizer, overwrite=overwrite)
