"""A task made of the user's own data: one JSON object per line (plain question/answer rows,
GSM8K rows or MATH rows)."""

from __future__ import annotations

import gzip
import json
import math
import os
import random
import re
from typing import IO, Any

from o1search.reward.verifiers import (
    MathAnswerVerifier,
    Verifier,
    VerifyResult,
    extract_boxed,
)
from o1search.tasks.base import Problem, Task, check_completion_type

#: The longest reference answer accepted (characters): far beyond any real answer, and
#: short enough that verifiers never meet a number too long to convert.
MAX_ANSWER_CHARS = 1000

__all__ = ["JsonlTask"]


_GSM8K_FINAL = re.compile(r"^\s*####\s*(.*?)\s*$")
_CALCULATOR = re.compile(r"<<[^<>\n]*>>")  # GSM8K's calculator annotations, "<<48/2=24>>"
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
FORMATS = ("auto", "plain", "gsm8k", "math")
#: Field names each layout uses when the caller does not name them: (question, answer,
#: solution). MATH's reference answer is read from its solution (``None``).
_DEFAULT_FIELDS = {
    "plain": ("question", "answer", None),
    "gsm8k": ("question", "answer", None),
    "math": ("problem", None, "solution"),
}


def _gsm8k_final_line(text: Any) -> int | None:
    """The index of the ``#### N`` line of a GSM8K worked answer, or None."""
    if not isinstance(text, str):
        return None
    lines = text.split("\n")
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip():
            return i if _GSM8K_FINAL.match(lines[i]) else None
    return None


class JsonlTask(Task):
    r"""Problems read from a JSON Lines file, verified by a math-answer verifier by default.

    Each non-blank line is a JSON object. Three layouts are read (``format=``):

    ``"plain"``  a question and a reference answer field (default ``question``, ``answer``),
                 and optionally a solution field holding a gold trace.
    ``"gsm8k"``  GSM8K rows: ``question``, and ``answer`` holding a worked solution whose last
                 line is ``#### N``. The reference answer is N (thousands separators
                 dropped); the trace is the text before that line, one step per line, with the
                 calculator annotations (``<<48/2=24>>``) removed, then ``#### N``.
    ``"math"``   MATH rows: ``problem``, and ``solution`` ending in ``\boxed{...}``. The
                 reference answer is the content of the last ``\boxed{}`` (or the answer
                 field, when ``answer_field`` is given); the trace is the solution, one step
                 per line.
    ``"auto"``   (default) the layout of the first row: ``gsm8k`` when it has the question
                 and answer fields and the answer ends in a ``#### N`` line, ``plain`` when
                 it has them otherwise, ``math`` when it has ``problem`` and a ``solution``
                 with a ``\boxed{}`` instead; ``plain`` (and its error) when none fits.

    Field names left ``None`` are the layout's (above); under ``"auto"``, naming the plain
    layout's own (``question``, ``answer``) counts as leaving them ``None``. The train/test split is a seeded
    shuffle of the lines. A ``.jsonl.gz`` file is read through gzip.

    Parameters:
        path: the ``.jsonl`` (or ``.jsonl.gz``) file.
        format: ``"auto"``, ``"plain"``, ``"gsm8k"`` or ``"math"`` (above).
        question_field, answer_field: field names of the question and the reference answer
            (answers that are numbers are turned into text).
        solution_field: field with a gold trace (``plain``: optional; a list of step
            strings, or one string split at ``step_delimiter``; ``math``: the solution).
        id_field: optional field with a problem id (default: ``<file stem>-<line number>``).
        test_fraction: share of problems in the test split (default 0.1; at least one
            problem goes to each split when there are two or more and the fraction is in
            (0, 1)).
        seed: split seed.
        prompt_template: ``str.format`` template of the prompt; it receives ``question``
            and every field of the record (default ``"{question}\n"``).
        verifier: how answers are judged (default :class:`MathAnswerVerifier`).
        step_delimiter: the step delimiter of traces (default ``"\n"``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: an unknown ``format``; a line is not valid JSON or not an object, a
            field is missing or of the wrong kind, a GSM8K answer has no ``#### N`` line, a
            MATH solution has no ``\boxed{}`` (each message names the file, the line and
            the field); the file has no problems, or ``test_fraction`` is outside [0, 1].
    """

    name = "jsonl"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        format: str = "auto",
        question_field: str | None = None,
        answer_field: str | None = None,
        solution_field: str | None = None,
        id_field: str | None = None,
        test_fraction: float = 0.1,
        seed: int = 0,
        prompt_template: str = "{question}\n",
        verifier: Verifier | None = None,
        step_delimiter: str = "\n",
    ) -> None:
        super().__init__()
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
        if not 0.0 <= test_fraction <= 1.0:
            raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
        if not step_delimiter:
            raise ValueError("step_delimiter must not be empty")
        self.path = os.fspath(path)
        self._given = (question_field, answer_field, solution_field)
        if format == "auto":
            # The plain layout's own names, passed explicitly (as the CLI does), still leave
            # the layout to the file.
            self._given = tuple(None if g == d else g  # type: ignore[assignment]
                                for g, d in zip(self._given, _DEFAULT_FIELDS["plain"]))
        self._given_format = format
        self.id_field = id_field
        self.test_fraction = test_fraction
        self.seed = seed
        self.prompt_template = prompt_template
        self.answer_verifier = verifier or MathAnswerVerifier()
        self.step_delimiter = step_delimiter
        stem = os.path.basename(self.path)
        stem = stem.removesuffix(".gz").removesuffix(".jsonl")
        self.name = stem or "jsonl"
        self._set_format(format if format != "auto" else "plain")
        # Read eagerly so that a bad file fails here, where the user names it.
        self._all = self._read()

    def _set_format(self, fmt: str) -> None:
        if fmt == "gsm8k" and self._given[2] is not None:
            raise ValueError("format='gsm8k' reads the trace from the answer field; "
                             "leave solution_field unset")
        defaults = _DEFAULT_FIELDS[fmt]
        self.format = fmt
        self.question_field, answer_field, self.solution_field = (
            g if g is not None else d for g, d in zip(self._given, defaults))
        self.answer_field = answer_field if answer_field is not None else "answer"
        # MATH reads the answer from the solution unless an answer field is named.
        self._answer_from_solution = fmt == "math" and self._given[1] is None

    def _detect(self, rec: dict[str, Any]) -> str:
        """The layout of the first record (see the class docstring, ``"auto"``)."""
        q = self._given[0] or "question"
        a = self._given[1] or "answer"
        if q in rec and a in rec:
            return "gsm8k" if self._given[2] is None and _gsm8k_final_line(rec[a]) is not None \
                else "plain"
        mq, ms = self._given[0] or "problem", self._given[2] or "solution"
        if mq in rec and isinstance(rec.get(ms), str) and extract_boxed(rec[ms]) is not None:
            return "math"
        return "plain"

    def _field(self, rec: dict[str, Any], field: str, lineno: int) -> Any:
        if field in rec:
            return rec[field]
        present = ", ".join(repr(k) for k in rec) or "none"
        msg = f"{self.path}:{lineno}: missing field {field!r} (fields present: {present})"
        for knob in ("question", "answer", "solution", "id"):
            if getattr(self, f"{knob}_field") == field:
                msg += f"; set {knob}_field= to the name your file uses"
                break
        if self.format == "plain" and "problem" in rec and "solution" in rec:
            msg += " (MATH rows: format='math')"
        raise ValueError(msg + f" [format={self.format!r}]")

    def _open(self) -> IO[str]:
        if self.path.endswith(".gz"):
            return gzip.open(self.path, "rt", encoding="utf-8")
        return open(self.path, encoding="utf-8")

    def _read(self) -> list[tuple[Problem, dict[str, Any]]]:
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"JSONL task file not found: {self.path}")
        if os.path.isdir(self.path):
            raise ValueError(f"{self.path} is a directory, not a JSONL file")
        out: list[tuple[Problem, dict[str, Any]]] = []
        ids: set[str] = set()
        with self._open() as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                rec = self._parse_line(line, lineno)
                if not out and self._given_format == "auto":
                    self._set_format(self._detect(rec))
                question, answer, solution = self._read_record(rec, lineno)
                pid = (
                    str(self._field(rec, self.id_field, lineno))
                    if self.id_field is not None
                    else f"{self.name}-{lineno}"
                )
                if pid in ids:
                    raise ValueError(f"{self.path}:{lineno}: duplicate id {pid!r}")
                ids.add(pid)
                out.append((Problem(pid, question, answer, solution, rec), rec))
        if not out:
            raise ValueError(f"{self.path} holds no problems (every line is blank)")
        return out

    def _parse_line(self, line: str, lineno: int) -> dict[str, Any]:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{self.path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        except ValueError as exc:  # e.g. an integer beyond Python's digit limit
            raise ValueError(f"{self.path}:{lineno}: {' '.join(str(exc).split()[:8])}"
                             " (give very long numbers as strings)") from None
        if not isinstance(rec, dict):
            raise ValueError(
                f"{self.path}:{lineno}: expected a JSON object, got {type(rec).__name__}"
            )
        return rec

    def _read_record(self, rec: dict[str, Any], lineno: int) -> tuple[str, str, tuple[str, ...]]:
        """(question, reference answer, trace) of one record, in this task's layout."""
        where = f"{self.path}:{lineno}"
        question = self._field(rec, self.question_field, lineno)
        if not isinstance(question, str):
            raise ValueError(f"{where}: field {self.question_field!r} must be a string, "
                             f"got {type(question).__name__}")
        solution: tuple[str, ...] = ()
        if self.format == "gsm8k":
            worked = self._field(rec, self.answer_field, lineno)
            final = _gsm8k_final_line(worked)
            if final is None:
                raise ValueError(f"{where}: field {self.answer_field!r} must be a GSM8K worked "
                                 "answer whose last line is '#### <answer>' (format='gsm8k')")
            lines = worked.split("\n")
            answer: Any = _GSM8K_FINAL.match(lines[final]).group(1)  # type: ignore[union-attr]
            if _THOUSANDS.match(answer):
                answer = answer.replace(",", "")
            steps = (" ".join(_CALCULATOR.sub("", ln).split()) for ln in lines[:final])
            solution = (*(s for s in steps if s), f"#### {answer}")
            if not answer:
                raise ValueError(f"{where}: field {self.answer_field!r}: the '####' line "
                                 "gives no answer")
        else:
            if self.solution_field is not None:
                solution = self._read_solution(rec, lineno)
            if self._answer_from_solution:
                raw = rec[self.solution_field]  # type: ignore[index]
                boxed = extract_boxed(raw if isinstance(raw, str) else "\n".join(raw))
                if boxed is None or not boxed.strip():
                    raise ValueError(f"{where}: field {self.solution_field!r} has no "
                                     "\\boxed{...} answer (format='math'; or set "
                                     "answer_field= to a field holding the answer)")
                answer = boxed.strip()
            else:
                answer = self._field(rec, self.answer_field, lineno)
        if isinstance(answer, (dict, list, bool)) or answer is None:
            raise ValueError(f"{where}: field {self.answer_field!r} must be a string "
                             f"or a number, got {json.dumps(answer)}")
        if isinstance(answer, float) and not math.isfinite(answer):
            raise ValueError(f"{where}: field {self.answer_field!r} is {answer}, which no "
                             "answer can equal; give a finite number or a string")
        if len(str(answer)) > MAX_ANSWER_CHARS:
            raise ValueError(f"{where}: field {self.answer_field!r} is {len(str(answer)):,} "
                             f"characters long (at most {MAX_ANSWER_CHARS:,})")
        return question, str(answer), solution

    def _read_solution(self, rec: dict[str, Any], lineno: int) -> tuple[str, ...]:
        assert self.solution_field is not None
        sol = self._field(rec, self.solution_field, lineno)
        if isinstance(sol, str):
            return tuple(s for s in sol.split(self.step_delimiter) if s.strip())
        if isinstance(sol, list) and all(isinstance(s, str) for s in sol):
            return tuple(sol)
        raise ValueError(f"{self.path}:{lineno}: field {self.solution_field!r} must be a "
                         "string or a list of strings")

    def _make_splits(self) -> dict[str, list[Problem]]:
        n = len(self._all)
        order = list(range(n))
        random.Random(f"jsonl:{self.seed}").shuffle(order)
        n_test = round(n * self.test_fraction)
        if n >= 2 and 0.0 < self.test_fraction < 1.0:
            n_test = min(max(n_test, 1), n - 1)
        test_idx = set(order[:n_test])
        return {
            "train": [self._all[i][0] for i in range(n) if i not in test_idx],
            "test": [self._all[i][0] for i in range(n) if i in test_idx],
        }

    def __len__(self) -> int:
        return len(self._all)

    def all_problems(self) -> list[Problem]:
        """Every problem of the file, in file order (what ``o1search search --task FILE``
        evaluates unless a split is asked for)."""
        return [p for p, _ in self._all]

    def prompt(self, problem: Problem) -> str:
        """The prompt: ``prompt_template`` filled with the record's fields."""
        fields = {k: v for k, v in problem.metadata.items() if isinstance(k, str)}
        fields["question"] = problem.question
        try:
            return self.prompt_template.format(**fields)
        except (KeyError, IndexError) as exc:
            raise ValueError(
                f"prompt_template {self.prompt_template!r} uses {exc}, which problem "
                f"{problem.id!r} lacks"
            ) from None

    def extract_answer(self, completion: str) -> str | None:
        """The answer the verifier reads from ``completion`` (its ``extract`` method)."""
        extract = getattr(self.answer_verifier, "extract", None)
        return extract(completion) if extract is not None else None

    def evaluate(self, problem: Problem, completion: str) -> VerifyResult:
        """See :meth:`Task.evaluate`: the verifier's verdict against ``problem.answer``."""
        check_completion_type(completion)
        if isinstance(self.answer_verifier, MathAnswerVerifier):
            # The whole problem: its question lets the verifier skip an echo of it.
            return self.answer_verifier(problem, completion)
        return self.answer_verifier(problem.answer, completion)
