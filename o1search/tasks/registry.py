"""Find a task by name (``"countdown"``, ``"arithmetic"``) or by the path of a JSONL file."""

from __future__ import annotations

import os
from collections.abc import Callable

from o1search.tasks.arithmetic import ArithmeticTask
from o1search.tasks.base import Task
from o1search.tasks.countdown import CountdownTask
from o1search.tasks.jsonl import JsonlTask

__all__ = ["available_tasks", "get_task", "register_task"]

_REGISTRY: dict[str, Callable[..., Task]] = {
    "countdown": CountdownTask,
    "arithmetic": ArithmeticTask,
}


def register_task(name: str, factory: Callable[..., Task]) -> None:
    """Make ``get_task(name, **knobs)`` return ``factory(**knobs)``.

    Raises:
        ValueError: ``name`` is empty, ends in ``.jsonl`` or is already registered.
    """
    if not name or name.endswith(".jsonl"):
        raise ValueError(f"invalid task name {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"task {name!r} is already registered")
    _REGISTRY[name] = factory


def available_tasks() -> list[str]:
    """The registered task names, sorted."""
    return sorted(_REGISTRY)


def get_task(name_or_path: str | os.PathLike[str], **knobs: object) -> Task:
    """A task by registered name, or a :class:`JsonlTask` for a ``.jsonl`` path.

    Parameters:
        name_or_path: ``"countdown"``, ``"arithmetic"``, another registered name, or the
            path of a JSON Lines file.
        **knobs: keyword arguments of the task's constructor (e.g. ``num_count=4``).

    Returns:
        The task.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
        FileNotFoundError: a ``.jsonl`` path that does not exist.
        TypeError: a knob the task does not take.
    """
    key = os.fspath(name_or_path)
    if key in _REGISTRY:
        return _REGISTRY[key](**knobs)
    if key.endswith(".jsonl") or os.path.isfile(key):
        return JsonlTask(key, **knobs)  # type: ignore[arg-type]
    raise ValueError(
        f"unknown task {key!r}; use one of {available_tasks()} or the path of a .jsonl file"
    )
