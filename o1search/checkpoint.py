"""Atomic checkpoints in ``transformers`` format.

A checkpoint is a directory: the model's ``save_pretrained`` files (config.json,
model.safetensors, generation_config.json), the tokenizer's, and optionally
``extra_state.pt`` (trainer state: step, optimizer, scheduler, ...). It is an output folder of
:mod:`o1search.outputs`: written atomically (never half-written where a reader looks, the
previous checkpoint recovered after a crash mid-save), replacing only an output of ours.

The output-folder names (:class:`OutputPathError`, :func:`check_output_dir`,
:func:`atomic_output_dir`, ...) are re-exported here, where earlier versions defined them.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from o1search.outputs import (
    LATEST_FILE,
    MARKER_FILE,
    OutputPathError,
    atomic_output_dir,
    check_output_dir,
    check_output_file,
    output_state,
    record_entries,
    recover_checkpoint,
    resolve_latest,
    set_latest,
)

__all__ = ["Checkpoint", "EXTRA_STATE_FILE", "LATEST_FILE", "MARKER_FILE", "OutputPathError",
           "atomic_output_dir", "check_output_dir", "check_output_file", "load_checkpoint",
           "output_state", "record_entries", "resolve_latest", "set_latest",
           "recover_checkpoint", "save_checkpoint"]

EXTRA_STATE_FILE = "extra_state.pt"


@dataclasses.dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        path: the checkpoint directory.
        model: the model, in eval mode.
        tokenizer: its tokenizer.
        extra_state: what was passed as ``extra_state`` to :func:`save_checkpoint`
            (``{}`` when nothing was).
    """

    path: Path
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    extra_state: dict[str, Any]



def save_checkpoint(
    path: str | os.PathLike[str],
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase | None = None,
    extra_state: dict[str, Any] | None = None,
    *,
    extra_files: dict[str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a checkpoint atomically (see the module docstring), replacing an old one.

    Parameters:
        path: the checkpoint directory (created or replaced; its parent is created). An
            existing directory is replaced only when it is empty or an output this library
            wrote (its marker lists every entry), else :class:`OutputPathError`.
        model: a ``transformers`` model (saved with ``save_pretrained``, safetensors).
        tokenizer: its tokenizer, saved beside it (optional).
        extra_state: trainer state to save with ``torch.save``: dicts, lists, numbers,
            strings and tensors (e.g. ``optimizer.state_dict()``); loaded back with
            ``weights_only=True``.
        extra_files: more text files to write into the checkpoint, ``{name: text}`` (e.g.
            a training report); names are plain file names.
        overwrite: write into a directory that holds files of someone else's: the
            checkpoint's files replace same-named files, every other file stays.

    Returns:
        The checkpoint directory.

    Raises:
        TypeError: ``extra_state`` is not a dict.
        ValueError: an ``extra_files`` name is not a plain file name.
        OutputPathError: ``path`` may not be written (see :func:`check_output_dir`).
        OSError: the write failed; the previous checkpoint (if any) is unchanged.
    """
    if extra_state is not None and not isinstance(extra_state, dict):
        raise TypeError(f"extra_state must be a dict, got {type(extra_state).__name__}")
    for name in extra_files or {}:
        if not name or os.path.basename(name) != name or name in (".", "..", MARKER_FILE):
            raise ValueError(f"extra_files names must be plain file names, got {name!r}")
    with atomic_output_dir(path, kind="checkpoint", overwrite=overwrite) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if extra_state is not None:
            torch.save(extra_state, tmp / EXTRA_STATE_FILE)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
    return Path(os.fspath(path))


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint` (or any ``save_pretrained``
    directory with a tokenizer), recovering an interrupted save first.

    Parameters:
        path: the checkpoint directory.
        device, dtype: as in :func:`o1search.policy.load_policy`.

    Returns:
        A :class:`Checkpoint`; tensors of ``extra_state`` are loaded on CPU.

    Raises:
        FileNotFoundError: no checkpoint at ``path`` (or it lacks config/weights/tokenizer).
    """
    from o1search.policy.model import load_policy

    target = resolve_latest(path)
    recover_checkpoint(target)
    model, tokenizer = load_policy(target, device=device, dtype=dtype)
    extra: dict[str, Any] = {}
    if (target / EXTRA_STATE_FILE).is_file():
        extra = torch.load(target / EXTRA_STATE_FILE, map_location="cpu", weights_only=True)
    return Checkpoint(path=target, model=model, tokenizer=tokenizer, extra_state=extra)
