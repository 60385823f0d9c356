"""Reading the answer out of a completion: the stated final answer (``\\boxed{}``,
``answer ...``, ``#### ...``) and the program of a code completion.
"""

from __future__ import annotations

import re

__all__ = ["extract_boxed", "extract_code", "extract_final_answer"]

_ANSWER_LINE = re.compile(
    r"(?:final\s+answer|answer)\s*(?:is)?\s*[:=]?\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE
)
_GSM8K = re.compile(r"^\s*####\s*(.+?)\s*$", re.MULTILINE)


def extract_boxed(text: str) -> str | None:
    r"""The contents of the last ``\boxed{...}`` (or ``\fbox{...}``) in ``text``, braces balanced.

    Returns None when there is none or its braces never close.
    """
    best = None
    for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            best = text[m.end() : i - 1]
    return best


def extract_final_answer(text: str) -> str | None:
    r"""The final answer a completion states, or None.

    Looks, in order, for the last ``\boxed{...}``, the last ``answer ...`` /
    ``final answer: ...`` / ``the answer is ...`` line, and a GSM8K-style ``#### ...`` line.
    """
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed.strip()
    found = None
    for m in _ANSWER_LINE.finditer(text):
        found = m.group(1)
    if found is None:
        for m in _GSM8K.finditer(text):
            found = m.group(1)
    if found is None:
        return None
    found = found.strip().rstrip(".").strip()
    if len(found) >= 2 and found[0] == found[-1] == "$":
        found = found[1:-1].strip()
    return found or None


def extract_code(text: str) -> str:
    """The program in a completion: the last fenced ```python block, else the last fenced
    block of any language, else the whole text."""
    blocks = re.findall(r"```[ \t]*(\w*)[^\n]*\n(.*?)```", text, flags=re.DOTALL)
    py = [body for lang, body in blocks if lang.lower() in ("python", "py", "python3")]
    if py:
        return py[-1]
    if blocks:
        return blocks[-1][1]
    return text
