"""Token-id validation shared by every layer (engine, rewards, search).

Token ids are the currency from prompt to answer; text is never accepted where ids are
expected, so a caller that forgot to tokenize (or re-tokenizes inside a loop) hears about it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["MAX_TOKEN_ID", "as_token_ids", "ends_with_text"]

MAX_TOKEN_ID = 2**31 - 1  # ids cross into the native core as int32


def as_token_ids(tokens: Any, what: str, *, allow_empty: bool = True) -> tuple[int, ...]:
    """``tokens`` as a tuple of ints in ``[0, 2**31 - 1]``.

    Parameters
    ----------
    tokens : sequence of int, or a 1-D NumPy / torch integer array ``[T]``
    what : str
        Name used in error messages.
    allow_empty : bool
        Whether an empty sequence is accepted.

    Returns
    -------
    tuple of int

    Raises
    ------
    TypeError
        Text, floats, bools or other non-integer items.
    ValueError
        Not 1-D, an id outside ``[0, 2**31 - 1]``, or empty when ``allow_empty`` is False.
    """
    if isinstance(tokens, (str, bytes)):
        raise TypeError(f"{what} must be token ids, not text (tokenize once, outside the "
                        "search loop)")
    if hasattr(tokens, "detach"):  # a torch tensor, without importing torch here
        tokens = tokens.detach().cpu().numpy()
    if isinstance(tokens, np.ndarray):
        if tokens.ndim != 1:
            raise ValueError(f"{what} must be 1-D, got shape {tokens.shape}")
        if tokens.size and (tokens.dtype == np.bool_ or not np.issubdtype(tokens.dtype, np.integer)):
            raise TypeError(f"{what} must hold integers, got dtype {tokens.dtype}")
        items = tokens.tolist()
    else:
        try:
            items = list(tokens)
        except TypeError:
            raise TypeError(f"{what} must be a sequence of token ids, got "
                            f"{type(tokens).__name__}") from None
    out = []
    for t in items:
        if isinstance(t, bool) or not hasattr(type(t), "__index__"):
            raise TypeError(f"{what} must hold integer token ids, got {t!r}")
        v = operator.index(t)
        if not 0 <= v <= MAX_TOKEN_ID:
            raise ValueError(f"{what} has token id {v} outside [0, {MAX_TOKEN_ID}]")
        out.append(v)
    if not allow_empty and not out:
        raise ValueError(f"{what} is empty")
    return tuple(out)


def ends_with_text(gen: Sequence[int], text: str,
                   decode: Callable[[list[int]], str] | None) -> bool:
    """Whether the last token of ``gen`` completes an occurrence of ``text`` in its decoded
    text (a string step delimiter; BPE tokenizers merge "\n\n", or "\n" and the next word,
    into one token, so the delimiter's own ids never appear).

    Only a window of ``len(text) + 1`` tokens is decoded (each token decodes to at least one
    character, so an occurrence that ends in the last token lies inside it; one that ended
    earlier would have ended the step then): the prefix is never re-decoded. The engine stops
    steps with it and step scorers split completions with it, so both agree on step ends."""
    if decode is None or not gen:
        return False
    window = list(gen[-(len(text) + 1):])
    if text in decode(window):
        return len(window) == 1 or text not in decode(window[:-1])
    return False
