"""Reasoning tasks: built-in synthetic tasks with step traces and exact verifiers, and
user data from JSON Lines files."""

from __future__ import annotations

from o1search.tasks.arithmetic import ArithmeticTask
from o1search.tasks.base import Problem, Step, Task, TraceError, parse_trace
from o1search.tasks.countdown import CountdownTask
from o1search.tasks.jsonl import JsonlTask
from o1search.tasks.registry import available_tasks, get_task, register_task

__all__ = [
    "ArithmeticTask",
    "CountdownTask",
    "JsonlTask",
    "Problem",
    "Step",
    "Task",
    "TraceError",
    "available_tasks",
    "get_task",
    "parse_trace",
    "register_task",
]
