"""Requests in flight inside the engine: a request's prefix state (:class:`_Group`) and
its samples (:class:`_Seq`), shared by the paged scheduler and the generic fallback."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from o1search._tokens import ends_with_text as _ends_text
from o1search.engine.requests import ExpandRequest, Sample
from o1search.engine.sampling import sample_tokens


def _exclusion_bias(seqs: Sequence[Any]) -> list[dict[int, float] | None] | None:
    """Per sequence, the sampler bias of its request's excluded steps (None: no request
    excludes anything)."""
    if all(s.group.req.exclude is None for s in seqs):
        return None
    return [None if s.group.req.exclude is None else s.group.req.exclude.bias(s.gen)
            for s in seqs]



class _Seq:
    __slots__ = ("group", "index", "tokens", "gen", "logprobs", "raw", "pages", "kv_len",
                 "done", "unstored")

    def __init__(self, group: _Group, index: int, pages: list[int]) -> None:
        self.group = group
        self.index = index
        self.tokens = list(group.tokens)
        self.gen: list[int] = []
        self.logprobs: list[float] = []
        self.raw: list[float] = []
        self.pages = pages
        self.kv_len = group.length
        self.done = False
        self.unstored = False  # generic path: finished, KV not yet copied to the store


class _Group:
    """A request in flight: its prefix state and its samples."""

    def __init__(self, idx: int, req: ExpandRequest, seed: int, delimiter: tuple[int, ...],
                 max_new: int, stop_text: str | None = None,
                 decode: Callable[[list[int]], str] | None = None) -> None:
        self.idx = idx
        self.req = req
        self.tokens = list(req.prefix)
        self.length = len(self.tokens)
        self.seed = seed
        self.delimiter = delimiter
        # A string delimiter is also matched on the decoded text of the new tokens: BPE
        # tokenizers merge "\n\n" (or "\n" and the next word) into one token, so its ids
        # alone would never appear.
        self.stop_text = stop_text
        self.decode = decode
        self.max_new = max_new
        self.node: int | None = None  # locked cache handle
        self.cached = 0
        self.pages: list[int] = []  # ceil(L / page_size) prefix pages
        self.owned: list[int] = []  # held pages not yet passed to the tree or a sample
        self.spare: list[int] = []  # reserve for the samples' new pages
        self.prefill_pos = 0
        self.seqs: list[_Seq] = []
        self.results: list[Sample | None] = [None] * req.n
        self.remaining = req.n



def _finish_reason(gen: list[int], g: _Group, eos: frozenset[int]) -> str | None:
    stop = g.req.stop
    last = gen[-1]
    if stop.stop_at_eos and last in eos:
        return "eos"
    d = g.delimiter
    if d and len(gen) >= len(d) and tuple(gen[-len(d):]) == d:
        return "stop"
    if g.stop_text is not None and _ends_text(gen, g.stop_text, g.decode):
        return "stop"
    if len(gen) >= g.max_new:
        return "length"
    return None


def sample_and_append(logits: Any, seqs: list[_Seq], call: Any, eos: frozenset[int]
                      ) -> list[tuple[_Seq, str]]:
    """Draw each sequence's next token from its row of ``logits`` ``[B, V]`` (its request's
    sampling, its own random stream, excluded steps biased away), append it, and return the
    sequences that finished with it and why. Shared by the paged scheduler and the fallback."""
    params = [s.group.req.sampling for s in seqs]
    keys = [(s.group.seed, s.index, len(s.gen)) for s in seqs]
    tokens, logp, raw = sample_tokens(logits, params, keys, _exclusion_bias(seqs))
    call.generated_tokens += len(seqs)
    finished = []
    for s, t, lp, rl in zip(seqs, tokens.tolist(), logp.tolist(), raw.tolist(), strict=True):
        s.gen.append(t)
        s.tokens.append(t)
        s.logprobs.append(lp)
        s.raw.append(rl)
        reason = _finish_reason(s.gen, s.group, eos)
        if reason is not None:
            finished.append((s, reason))
    return finished
