"""Reasoning tasks: built-in synthetic tasks with step traces and exact verifiers, user data
from JSON Lines files (plain, GSM8K or MATH rows), reasoning-gym datasets and HumanEval-style
code problems."""

from __future__ import annotations

from o1search.tasks.arithmetic import ArithmeticTask
from o1search.tasks.base import Problem, Step, Task, TraceError, parse_trace
from o1search.tasks.code import CodeTask
from o1search.tasks.countdown import CountdownTask
from o1search.tasks.jsonl import JsonlTask
from o1search.tasks.reasoning_gym import ReasoningGymTask, extract_rg_answer
from o1search.tasks.registry import available_tasks, get_task, register_task

__all__ = [
    "ArithmeticTask",
    "CodeTask",
    "CountdownTask",
    "JsonlTask",
    "Problem",
    "ReasoningGymTask",
    "Step",
    "Task",
    "TraceError",
    "available_tasks",
    "extract_rg_answer",
    "get_task",
    "parse_trace",
    "register_task",
]
