"""Options shared by the experiment configs: documented dataclass fields and the token-budget
ceiling every run checks."""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["MAX_TOKEN_BUDGET", "check_budget", "help_field"]

#: The largest token budget per problem a run accepts: far beyond any search here, small
#: enough that sizing a run by it cannot exhaust memory.
MAX_TOKEN_BUDGET = 1_000_000


def check_budget(budget: int, what: str = "token budget") -> None:
    if budget > MAX_TOKEN_BUDGET:
        raise ValueError(f"{what} {budget} is beyond the limit of {MAX_TOKEN_BUDGET:,} "
                         "generated tokens per problem")


def help_field(default: Any, help_text: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help_text})

