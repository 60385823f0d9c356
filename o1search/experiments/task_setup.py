"""The task a run works on: built-in knobs matched to the policy, JSONL files, fresh problems,
and a warning when the tokenizer cannot represent a prompt."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_KNOBS", "fresh_problems", "load_task", "task_knobs", "warn_unrepresentable"]

#: The shipped policy's Countdown knobs (used when a policy folder does not name its own).
DEFAULT_KNOBS = {"num_count": 3, "n_train": 1600, "n_test": 200, "seed": 0,
                 "check_prob": 0.1, "correction_prob": 0.05}


def load_task(spec: str, policy_dir: Path | None, *, question_field: str = "question",
              answer_field: str = "answer") -> Any:
    """The task: the policy's own Countdown knobs for ``countdown`` (so its test split is
    the one the policy never saw), a JSONL file with the given field names, or a name."""
    from o1search.tasks import get_task

    if spec == "countdown":
        return get_task("countdown", **task_knobs(policy_dir))
    if spec.endswith(".jsonl") or os.path.isfile(spec):
        return get_task(spec, question_field=question_field, answer_field=answer_field)
    return get_task(spec)


def warn_unrepresentable(tok: Any, task: Any, problems: Sequence[Any]) -> None:
    """One stderr line when prompts hold characters the tokenizer turns into <unk>: the
    policy would read something other than the user's text, silently."""
    from o1search.policy.model import unrepresentable_chars

    bad = unrepresentable_chars(tok, [task.prompt(p) for p in problems])
    if bad:
        shown = "".join(bad[:20]) + ("..." if len(bad) > 20 else "")
        print(f"o1search: warning: {len(bad)} characters of the prompts are not in the "
              f"policy's vocabulary and become {tok.unk_token!r}: {shown!r}; use a policy "
              "whose tokenizer covers this text (--model)", file=sys.stderr)


def task_knobs(policy_dir: Path | None) -> dict[str, Any]:
    """The Countdown knobs a policy was trained on (its ``training_report.json``), else the
    shipped policy's."""
    knobs = dict(DEFAULT_KNOBS)
    if policy_dir is not None:
        report = Path(policy_dir) / "training_report.json"
        if report.is_file():
            try:
                knobs.update(json.loads(report.read_text())["task"]["knobs"])
            except (ValueError, KeyError, TypeError):
                pass  # an unreadable report: the defaults are the shipped task's
    return knobs


def _key(p: Any) -> tuple:
    return tuple(sorted(p.metadata["nums"])), p.metadata["target"]


def fresh_problems(task: Any, n: int, seed: int, exclude: Sequence[Any]) -> list[Any]:
    """``n`` Countdown problems from the policy's generator (another seed), none of them in
    ``exclude`` (the policy's splits): unseen by the policy, disjoint from the test set."""
    from o1search.tasks import CountdownTask

    seen = {_key(p) for p in exclude}
    pool = CountdownTask(**{**{k: getattr(task, k) for k in ("num_count", "check_prob",
                                                            "correction_prob")},
                            "max_number": task.max_number, "seed": seed,
                            "n_train": n + len(seen), "n_test": 0})
    out = [p for p in pool.problems("train") if _key(p) not in seen]
    return out[:n]

