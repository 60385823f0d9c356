"""Find a task by name (``"countdown"``, ``"arithmetic"``, ``"humaneval"``), as a reasoning-gym
dataset (``"rg:<dataset>"``) or by the path of a JSONL file."""

from __future__ import annotations

import os
from collections.abc import Callable

from o1search.tasks.arithmetic import ArithmeticTask
from o1search.tasks.base import Task
from o1search.tasks.code import CodeTask
from o1search.tasks.countdown import CountdownTask
from o1search.tasks.jsonl import JsonlTask
from o1search.tasks.reasoning_gym import ReasoningGymTask

__all__ = ["available_tasks", "get_task", "register_task"]

_REGISTRY: dict[str, Callable[..., Task]] = {
    "countdown": CountdownTask,
    "arithmetic": ArithmeticTask,
    "humaneval": CodeTask,
}
#: ``get_task("rg:<dataset>", ...)`` is ``ReasoningGymTask("<dataset>", ...)``.
RG_PREFIX = "rg:"


def register_task(name: str, factory: Callable[..., Task]) -> None:
    """Make ``get_task(name, **knobs)`` return ``factory(**knobs)``.

    Raises:
        ValueError: ``name`` is empty, ends in ``.jsonl``, starts with ``rg:`` or is already
            registered.
    """
    if not name or name.endswith(".jsonl") or name.startswith(RG_PREFIX):
        raise ValueError(f"invalid task name {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"task {name!r} is already registered")
    _REGISTRY[name] = factory


def available_tasks() -> list[str]:
    """The registered task names, sorted."""
    return sorted(_REGISTRY)


def get_task(name_or_path: str | os.PathLike[str], **knobs: object) -> Task:
    """A task by registered name, a reasoning-gym dataset, or a :class:`JsonlTask` for a
    ``.jsonl`` path.

    Parameters:
        name_or_path: ``"countdown"``, ``"arithmetic"``, ``"humaneval"`` (a
            :class:`CodeTask`), another registered name, ``"rg:<dataset>"`` (a
            :class:`ReasoningGymTask` of that reasoning-gym dataset, e.g.
            ``"rg:basic_arithmetic"``), or the path of a JSON Lines file (``.jsonl`` or
            ``.jsonl.gz``; GSM8K and MATH rows are recognised).
        **knobs: keyword arguments of the task's constructor (e.g. ``num_count=4``; for
            ``rg:`` tasks ``n_train``, ``n_test``, ``seed`` and the dataset's config).

    Returns:
        The task.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
        FileNotFoundError: a ``.jsonl`` path that does not exist.
        ImportError: ``rg:`` or ``humaneval`` without the optional packages.
        TypeError: a knob the task does not take.
    """
    key = os.fspath(name_or_path)
    if key in _REGISTRY:
        return _REGISTRY[key](**knobs)
    if key.startswith(RG_PREFIX):
        return ReasoningGymTask(key[len(RG_PREFIX):], **knobs)  # type: ignore[arg-type]
    if key.endswith((".jsonl", ".jsonl.gz")) or os.path.isfile(key):
        return JsonlTask(key, **knobs)  # type: ignore[arg-type]
    raise ValueError(
        f"unknown task {key!r}; use one of {available_tasks()}, 'rg:<reasoning-gym dataset>' "
        "or the path of a .jsonl file"
    )
