"""Resources of a run sized like an engine sizes them, not hard-coded: the KV pool from the
model's bytes per token and a memory budget, and torch's CPU threads, both chosen once and
said once.

The KV budget defaults to a fraction of the memory available now (the way vLLM's
``gpu_memory_utilization`` and SGLang's ``mem_fraction_static`` size theirs; vLLM's CPU
backend takes a fixed 4 GiB), and is never more than what the run can use: the pool holds
``need_tokens`` (the problems of one batch, their prompts and what their samples can
generate at once), because the engine allocates the pool up front.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

__all__ = ["ResourcePlan", "available_memory_bytes", "default_threads", "kv_bytes_per_token",
           "plan_resources"]

#: Default share of the available memory the KV pool may take, and its ceiling.
KV_MEMORY_FRACTION = 0.25
KV_MEMORY_CEILING = 4 << 30


def kv_bytes_per_token(config: Any, dtype_bytes: int) -> int:
    """Bytes of K and V one token occupies across all layers of a ``transformers`` config."""
    layers = int(config.num_hidden_layers)
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    return 2 * layers * kv_heads * head_dim * int(dtype_bytes)


def available_memory_bytes() -> int | None:
    """``MemAvailable`` of /proc/meminfo (Linux), else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def default_threads() -> int:
    """Half the CPUs this process may run on, at least one: torch's default of every
    logical CPU oversubscribes shared machines and hyper-threads (measured on the 2-core
    dev machine: 16.3 s of search with the default, 2.0 s with one thread)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, cpus // 2)


@dataclasses.dataclass(frozen=True)
class ResourcePlan:
    """What a run uses: ``num_pages`` KV pages of ``page_size`` tokens (``kv_bytes`` in
    all, ``bytes_per_token`` each) and ``threads`` torch CPU threads; ``why`` says how."""

    num_pages: int
    page_size: int
    bytes_per_token: int
    kv_bytes: int
    threads: int
    why: str

    def describe(self) -> str:
        """One line for the user."""
        return (f"KV pool {self.num_pages} pages x {self.page_size} tokens = "
                f"{self.kv_bytes / 2**20:.1f} MiB ({self.bytes_per_token} bytes/token; "
                f"{self.why}); torch threads {self.threads}")


def plan_resources(model_config: Any, *, dtype_bytes: int, need_tokens: int,
                   page_size: int = 16, num_pages: int | None = None,
                   kv_memory: int | None = None, threads: int | None = None) -> ResourcePlan:
    """Size the KV pool and the thread count.

    Parameters:
        model_config: the model's ``transformers`` config.
        dtype_bytes: bytes per element of the KV cache (the model's dtype).
        need_tokens: tokens the run can hold in KV at once (the pool is never larger).
        page_size: tokens per page.
        num_pages: use exactly this many pages (overrides the sizing).
        kv_memory: bytes the pool may take (default: :data:`KV_MEMORY_FRACTION` of the
            available memory, at most :data:`KV_MEMORY_CEILING`).
        threads: torch CPU threads (default :func:`default_threads`).

    Raises:
        ValueError: sizes below 1, or a memory budget smaller than one page.
    """
    for name, v in (("need_tokens", need_tokens), ("page_size", page_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    per_token = kv_bytes_per_token(model_config, dtype_bytes)
    page_bytes = per_token * page_size
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f"threads must be an int >= 1, got {threads!r}")
    n_threads = threads if threads is not None else default_threads()
    if num_pages is not None:
        if isinstance(num_pages, bool) or not isinstance(num_pages, int) or num_pages < 1:
            raise ValueError(f"num_pages must be an int >= 1, got {num_pages!r}")
        return ResourcePlan(num_pages, page_size, per_token, num_pages * page_bytes,
                            n_threads, "--num-pages")
    if kv_memory is not None:
        if isinstance(kv_memory, bool) or not isinstance(kv_memory, int) or kv_memory < 1:
            raise ValueError(f"kv_memory must be a number of bytes >= 1, got {kv_memory!r}")
        budget, how = kv_memory, "--kv-memory"
    else:
        avail = available_memory_bytes()
        budget = min(KV_MEMORY_CEILING, int(avail * KV_MEMORY_FRACTION)) if avail \
            else KV_MEMORY_CEILING
        how = (f"{KV_MEMORY_FRACTION:.0%} of {avail / 2**30:.1f} GiB available"
               if avail else "default budget")
    by_memory = budget // page_bytes
    if by_memory < 1:
        raise ValueError(f"a KV memory budget of {budget} bytes holds no page of "
                         f"{page_bytes} bytes; raise --kv-memory")
    by_need = -(-need_tokens // page_size) + 1
    pages = int(min(by_memory, by_need))
    why = f"{how}, capped by what the run holds at once" if by_need < by_memory else how
    return ResourcePlan(pages, page_size, per_token, pages * page_bytes, n_threads, why)


def parse_memory(text: str) -> int:
    """``"512M"``, ``"2G"``, ``"1.5GiB"`` or a byte count -> bytes.

    Raises:
        ValueError: anything else.
    """
    s = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    mult = 1
    if s and s[-1] in scale:
        mult, s = scale[s[-1]], s[:-1]
    try:
        value = float(s)
    except ValueError:
        raise ValueError(f"a memory size like 512M or 2G, got {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"a memory size > 0, got {text!r}")
    return int(value * mult)
