r"""Reading the answer out of a completion: the stated final answer (``\boxed{}``,
``<answer>`` tags, GSM8K's ``#### ...``, ``the answer is ...``, MATH/Minerva's
``The final answer is $x$. I hope it is correct.``) and the program of a code completion.

Completions are untrusted and may be long; every scan here is linear in their length.
"""

from __future__ import annotations

import re

__all__ = [
    "extract_answers",
    "extract_boxed",
    "extract_boxed_all",
    "extract_code",
    "extract_final_answer",
]

_BOX_TOKEN = re.compile(r"\\(?:boxed|fbox)\s*\{|\{|\}")

# "answer" counts only when it introduces a value: "the answer is", "answers are",
# "final answer:", "answer = ", "the answer to part (a) is". A sentence that merely
# mentions the word ("think about the answer to this problem.") is not an answer line.
_ANCHOR = re.compile(
    r"\b(?:final\s+)?answers?\b"
    r"(?:[ \t]+(?:to|for|of|in)\b[^\n.:=]{0,60}?)?"
    r"(?:[ \t]*\b(?:is|are|was|will\s+be|would\s+be|should\s+be)\b[ \t]*:?|[ \t]*[:=])",
    re.IGNORECASE,
)
# "answer 56" on a line of its own: the word starts the line and a value follows.
_LINE_ANSWER = re.compile(r"^[ \t>*#]*(?:final[ \t]+)?answer\b[ \t]*(?=[-+$\\(\[{\d.])",
                          re.IGNORECASE | re.MULTILINE)
_GSM8K = re.compile(r"^[ \t]*####[ \t]*(\S[^\n]*?)[ \t]*$", re.MULTILINE)
_TAG_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_TAG_CLOSE = re.compile(r"</answer>", re.IGNORECASE)
_MAX_TAG_CHARS = 2000

# Words that hedge between alternatives, removed before the alternatives are read as a set.
_CONNECTOR = re.compile(r"\s*[;,]?\s*(?:\\text\{\s*(?:or|and)\s*\}|\b(?:or|and)\b)\s*",
                        re.IGNORECASE)
_HEDGE_WORDS = re.compile(
    r"\b(?:maybe|perhaps|possibly|probably|likely|either|one\s+of|any\s+of)\b\s*",
    re.IGNORECASE,
)


def extract_boxed_all(text: str) -> list[str]:
    r"""The contents of every closed ``\boxed{...}`` / ``\fbox{...}``, in order of their
    start, braces balanced; one pass over the text (unclosed boxes are left out)."""
    stack: list[tuple[bool, int]] = []  # (opens a box, where its contents start)
    found: list[tuple[int, str]] = []
    for m in _BOX_TOKEN.finditer(text):
        if m.group() == "}":
            if stack:
                is_box, begin = stack.pop()
                if is_box:
                    found.append((begin, text[begin : m.start()]))
        else:
            stack.append((m.group() != "{", m.end()))
    return [contents for _, contents in sorted(found)]


def extract_boxed(text: str) -> str | None:
    r"""The contents of the last ``\boxed{...}`` (or ``\fbox{...}``) in ``text``, braces balanced.

    Returns None when there is none or its braces never close.
    """
    boxes = extract_boxed_all(text)
    return boxes[-1] if boxes else None


def _first_sentence(s: str) -> str:
    """``s`` up to the first full stop, ``?`` or ``;`` that ends a sentence outside
    ``$...$`` (so ``3.5`` and ``$1.5$`` stay whole), or up to ``I hope``."""
    in_math = False
    for i, ch in enumerate(s):
        if ch == "$" and (i == 0 or s[i - 1] != "\\"):
            in_math = not in_math
        elif not in_math and ch in ".?;" and (i + 1 == len(s) or s[i + 1].isspace()):
            return s[:i]
    m = re.search(r"\s+I\s+hope\b", s)
    return s[: m.start()] if m else s


def _clean_value(s: str) -> str:
    """An answer without its delimiters: ``$``, ``\\(...\\)``, ``\\[...\\]``, ``**``, and
    trailing punctuation."""
    s = re.sub(r"(?<!\\)\$|\\[()\[\]]|\*\*", " ", s)
    s = " ".join(s.split()).rstrip(".,;:!").strip()
    # A closing bracket of the sentence around the statement ("(so the answer is 7)") is
    # not part of the answer: drop unbalanced ones at the end.
    for opener, closer in (("(", ")"), ("[", "]")):
        while s.endswith(closer) and s.count(closer) > s.count(opener):
            s = s[:-1].rstrip(".,;:! ")
    return s


def _stated_answer(text: str) -> str | None:
    """The answer of the last answer statement that has a value (not boxes)."""
    tag = None
    for tag in _TAG_OPEN.finditer(text):
        pass
    if tag is not None:  # the last <answer>, closed or cut off by a stop sequence
        close = _TAG_CLOSE.search(text, tag.end())
        inner = text[tag.end() : close.start() if close else len(text)][:_MAX_TAG_CHARS]
        inner_stated = _stated_answer(inner) if _TAG_OPEN.search(inner) is None else None
        value = inner_stated or _clean_value(inner)
        if value:
            return value
    gsm = None
    for gsm in _GSM8K.finditer(text):
        pass
    if gsm is not None:
        value = _clean_value(gsm.group(1))
        if value:
            return value
    anchors = [m.end() for m in _ANCHOR.finditer(text)]
    anchors += [m.end() for m in _LINE_ANSWER.finditer(text)]
    for end in sorted(anchors, reverse=True):
        line = text[end:].split("\n", 1)[0]
        value = _clean_value(_first_sentence(line.strip().lstrip("*").strip()))
        if value:
            return value
    return None


def extract_final_answer(text: str) -> str | None:
    r"""The final answer a completion states, or None.

    Looks, in order, for the last ``\boxed{...}``; the last ``<answer>...</answer>`` (an
    unclosed tag runs to the end, as a stop sequence leaves it); the last GSM8K-style
    ``#### ...`` line; the last answer statement: ``the answer is ...``, ``final answer:
    ...``, ``the answers are ...``, ``the answer to part (a) is ...``, or ``answer 56`` at the
    start of a line. A statement's value runs to the end of its sentence, so ``The final
    answer is $12$. I hope it is correct.`` reads ``12``; ``$`` and ``**`` are dropped. A
    mere mention of the word ("the answer to this problem.") states nothing.
    """
    boxed = extract_boxed(text)
    if boxed is not None and boxed.strip():
        return boxed.strip()
    return _stated_answer(text)


def _alternatives(answer: str) -> list[str]:
    """The alternatives one answer offers: ``3 or 4``, ``42 or maybe 43``, ``3 and 4``."""
    parts = (_HEDGE_WORDS.sub("", p).strip(" ,") for p in _CONNECTOR.split(answer))
    return [p for p in parts if p]


def _same_key(s: str) -> str:
    """Text that two boxes share when they state the same answer (``42`` and ``42.0``)."""
    key = "".join(s.split()).strip("$")
    try:
        return repr(float(key)) if re.fullmatch(r"-?\d+(?:\.\d*)?", key) else key
    except ValueError:
        return key


def extract_answers(text: str) -> list[str]:
    r"""Every alternative of the final answer a completion gives, without repeats.

    ``\boxed{3}\boxed{4}`` gives ``["3", "4"]``; ``The answer is 3 or 4.`` and ``42 or maybe
    43`` (as a statement) give both numbers; ``\boxed{42}`` twice gives ``["42"]``. The
    boxes, when there are any, are all final answers; otherwise the last statement of
    :func:`extract_final_answer` is. Empty when no answer is stated.
    """
    boxes = [b.strip() for b in extract_boxed_all(text) if b.strip()]
    answers = boxes if boxes else [a for a in [_stated_answer(text)] if a]
    out: list[str] = []
    seen: set[str] = set()
    for answer in answers:
        for alt in _alternatives(answer) or [answer]:
            if _same_key(alt) not in seen:
                seen.add(_same_key(alt))
                out.append(alt)
    return out


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
