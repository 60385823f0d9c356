"""A task made of the user's own data: one JSON object per line with a question and answer."""

from __future__ import annotations

import json
import math
import os
import random
from typing import Any

from o1search.reward.verifiers import MathAnswerVerifier, Verifier, VerifyResult
from o1search.tasks.base import Problem, Task, check_completion_type

#: The longest reference answer accepted (characters): far beyond any real answer, and
#: short enough that verifiers never meet a number too long to convert.
MAX_ANSWER_CHARS = 1000

__all__ = ["JsonlTask"]


class JsonlTask(Task):
    """Problems read from a JSON Lines file, verified by a math-answer verifier by default.

    Each non-blank line is a JSON object with at least the question and answer fields.
    The train/test split is a seeded shuffle of the lines.

    Parameters:
        path: the ``.jsonl`` file.
        question_field, answer_field: field names of the question and the reference answer
            (answers that are numbers are turned into text).
        solution_field: optional field with a gold trace: a list of step strings, or one
            string split at ``step_delimiter``.
        id_field: optional field with a problem id (default: ``<file stem>-<line number>``).
        test_fraction: share of problems in the test split (default 0.1; at least one
            problem goes to each split when there are two or more and the fraction is in
            (0, 1)).
        seed: split seed.
        prompt_template: ``str.format`` template of the prompt; it receives ``question``
            and every field of the record (default ``"{question}\\n"``).
        verifier: how answers are judged (default :class:`MathAnswerVerifier`).
        step_delimiter: the step delimiter of traces (default ``"\\n"``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line is not valid JSON or not an object, a field is missing (the
            message names the field, the line and the fields present), the file has no
            problems, or ``test_fraction`` is outside [0, 1].
    """

    name = "jsonl"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        question_field: str = "question",
        answer_field: str = "answer",
        solution_field: str | None = None,
        id_field: str | None = None,
        test_fraction: float = 0.1,
        seed: int = 0,
        prompt_template: str = "{question}\n",
        verifier: Verifier | None = None,
        step_delimiter: str = "\n",
    ) -> None:
        super().__init__()
        if not 0.0 <= test_fraction <= 1.0:
            raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
        if not step_delimiter:
            raise ValueError("step_delimiter must not be empty")
        self.path = os.fspath(path)
        self.question_field = question_field
        self.answer_field = answer_field
        self.solution_field = solution_field
        self.id_field = id_field
        self.test_fraction = test_fraction
        self.seed = seed
        self.prompt_template = prompt_template
        self.answer_verifier = verifier or MathAnswerVerifier()
        self.step_delimiter = step_delimiter
        self.name = os.path.splitext(os.path.basename(self.path))[0] or "jsonl"
        # Read eagerly so that a bad file fails here, where the user names it.
        self._all = self._read()

    def _field(self, rec: dict[str, Any], field: str, lineno: int) -> Any:
        if field in rec:
            return rec[field]
        present = ", ".join(repr(k) for k in rec) or "none"
        msg = f"{self.path}:{lineno}: missing field {field!r} (fields present: {present})"
        for knob in ("question", "answer", "solution", "id"):
            if getattr(self, f"{knob}_field") == field:
                msg += f"; set {knob}_field= to the name your file uses"
                break
        raise ValueError(msg)

    def _read(self) -> list[tuple[Problem, dict[str, Any]]]:
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"JSONL task file not found: {self.path}")
        if os.path.isdir(self.path):
            raise ValueError(f"{self.path} is a directory, not a JSONL file")
        out: list[tuple[Problem, dict[str, Any]]] = []
        ids: set[str] = set()
        with open(self.path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
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
                question = self._field(rec, self.question_field, lineno)
                answer = self._field(rec, self.answer_field, lineno)
                if not isinstance(question, str):
                    raise ValueError(
                        f"{self.path}:{lineno}: field {self.question_field!r} must be a "
                        f"string, got {type(question).__name__}"
                    )
                if isinstance(answer, (dict, list, bool)) or answer is None:
                    raise ValueError(
                        f"{self.path}:{lineno}: field {self.answer_field!r} must be a string "
                        f"or a number, got {json.dumps(answer)}"
                    )
                if isinstance(answer, float) and not math.isfinite(answer):
                    raise ValueError(
                        f"{self.path}:{lineno}: field {self.answer_field!r} is {answer}, "
                        "which no answer can equal; give a finite number or a string")
                if len(str(answer)) > MAX_ANSWER_CHARS:
                    raise ValueError(
                        f"{self.path}:{lineno}: field {self.answer_field!r} is "
                        f"{len(str(answer)):,} characters long (at most {MAX_ANSWER_CHARS:,})")
                solution: tuple[str, ...] = ()
                if self.solution_field is not None:
                    sol = self._field(rec, self.solution_field, lineno)
                    if isinstance(sol, str):
                        solution = tuple(s for s in sol.split(self.step_delimiter) if s.strip())
                    elif isinstance(sol, list) and all(isinstance(s, str) for s in sol):
                        solution = tuple(sol)
                    else:
                        raise ValueError(
                            f"{self.path}:{lineno}: field {self.solution_field!r} must be a "
                            "string or a list of strings"
                        )
                pid = (
                    str(self._field(rec, self.id_field, lineno))
                    if self.id_field is not None
                    else f"{self.name}-{lineno}"
                )
                if pid in ids:
                    raise ValueError(f"{self.path}:{lineno}: duplicate id {pid!r}")
                ids.add(pid)
                out.append((Problem(pid, question, str(answer), solution, rec), rec))
        if not out:
            raise ValueError(f"{self.path} holds no problems (every line is blank)")
        return out

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
        return self.answer_verifier(problem.answer, completion)
