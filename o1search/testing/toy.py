"""A scripted, deterministic policy with a known best answer, for tests and demos.

The toy world: a problem is a hidden *target* sequence of ``horizon`` actions. A completion
is ``horizon`` steps, each an action, then an EOS step; it is correct when its actions equal
the target. The policy's step distribution is known exactly: the target action has
probability ``p_target`` (small: the policy is weak), the other actions share the rest in
fixed proportions, so greedy decoding and majority votes settle on a *wrong* answer while a
verifier- or PRM-guided search can find the right one.

Tokens (all ints): ``BOS=0``, ``DELIM=1`` (ends a step), ``EOS=2``, ``REVISE=3`` (the
revision marker), action ``a`` → token ``10 + a`` repeated ``step_lengths[a]`` times, problem
``pid`` → token ``100 + pid``. A prompt is ``(BOS, 100 + pid)``.

Sampling is counter based like the engine's: sample ``i`` of a request with seed ``s`` draws
its ``k``-th step with the uniform number ``hash(s, i, k)``, so results depend on nothing but
the request. Temperature, top-k and top-p act on the step distribution. After ``r`` revision
markers the target's probability is multiplied by ``1 + revision_boost * r`` (a policy that
learns from its previous attempts).
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from o1search.protocols import (
    EvalRequest,
    GeneratorStats,
    SearchProblem,
    StepCandidate,
    StepOutput,
    StepRequest,
    derive_seed,
)

__all__ = ["ToyPolicy", "ToyProblem", "ToyPRM", "ToyVerifier", "BOS", "DELIM", "EOS",
           "REVISE"]

BOS, DELIM, EOS, REVISE = 0, 1, 2, 3
_ACTION0 = 10
_PROBLEM0 = 100


@dataclass(frozen=True)
class ToyProblem:
    """A toy problem: its id and hidden target actions."""

    pid: int
    target: tuple[int, ...]


def _uniform(seed: int, index: int, draw: int) -> float:
    h = hashlib.blake2b(struct.pack("<QQQ", seed & (2**64 - 1), index, draw), digest_size=8)
    return int.from_bytes(h.digest(), "little") / 2.0**64


class ToyPolicy:
    """Scripted :class:`~o1search.protocols.Generator` (see the module docstring).

    Parameters
    ----------
    num_actions : int
        Actions per step (>= 2).
    horizon : int
        Action steps per completion (>= 1).
    p_target : float
        Probability of the target action at each step, in (0, 1).
    step_lengths : sequence of int, optional
        Tokens of each action's step before the delimiter (default all 1).
    revision_boost : float
        Growth of the target's weight per revision marker in the context.

    Attributes
    ----------
    stats : GeneratorStats
    calls : list of int
        Number of requests in each ``generate`` call (to check batching).
    """

    def __init__(self, num_actions: int = 3, horizon: int = 3, p_target: float = 0.2, *,
                 step_lengths: Sequence[int] | None = None, revision_boost: float = 0.0) -> None:
        if num_actions < 2 or horizon < 1 or not 0.0 < p_target < 1.0:
            raise ValueError("ToyPolicy: need num_actions >= 2, horizon >= 1, 0 < p_target < 1")
        self.num_actions = num_actions
        self.horizon = horizon
        self.p_target = p_target
        self.step_lengths = tuple(step_lengths) if step_lengths else (1,) * num_actions
        if len(self.step_lengths) != num_actions or min(self.step_lengths) < 1:
            raise ValueError("ToyPolicy: step_lengths needs one length >= 1 per action")
        self.revision_boost = revision_boost
        self.stats = GeneratorStats()
        self.calls: list[int] = []
        self._seen: set[tuple[int, ...]] = set()

    # ------------------------------------------------------------------ the world
    def target(self, pid: int) -> tuple[int, ...]:
        """The hidden target of problem ``pid`` (deterministic)."""
        return tuple((pid * 7 + 3 * d + 1) % self.num_actions for d in range(self.horizon))

    def problems(self, pids: Sequence[int], *, seed: int = 0) -> list[SearchProblem]:
        """Search problems for ``pids`` (each seeded by its id, not its position)."""
        return [SearchProblem((BOS, _PROBLEM0 + p), ToyProblem(p, self.target(p)),
                              derive_seed(seed, p)) for p in pids]

    def step_probs(self, pid: int, depth: int, revisions: int = 0) -> list[float]:
        """The policy's distribution over actions at ``depth`` (before temperature)."""
        tgt = self.target(pid)[depth]
        others = [a for a in range(self.num_actions) if a != tgt]
        # Non-target actions get weights 2, 1, 1, ...: the first is the policy's mode.
        w = [2.0] + [1.0] * (len(others) - 1)
        rest = 1.0 - self.p_target
        p = [0.0] * self.num_actions
        p[tgt] = self.p_target * (1.0 + self.revision_boost * revisions)
        for a, x in zip(others, w):
            p[a] = rest * x / sum(w)
        s = sum(p)
        return [x / s for x in p]

    def actions(self, tokens: Sequence[int]) -> list[int]:
        """Actions of the steps in ``tokens`` (after the last revision marker)."""
        toks = list(tokens)
        if REVISE in toks:
            toks = toks[len(toks) - toks[::-1].index(REVISE):]
        out, prev_delim = [], True
        for t in toks:
            if t >= _ACTION0 and t < _PROBLEM0 and prev_delim:
                out.append(t - _ACTION0)
            prev_delim = t == DELIM
        return out

    def step_tokens(self, action: int) -> tuple[int, ...]:
        """Tokens of one action step, delimiter included."""
        return (_ACTION0 + action,) * self.step_lengths[action] + (DELIM,)

    @property
    def decoder(self) -> Callable[[Sequence[int]], str]:
        """:meth:`decode` (picked up by :class:`~o1search.search.Search`)."""
        return self.decode

    def decode(self, ids: Sequence[int]) -> str:
        """Readable text: actions as letters, steps on lines, special tokens dropped."""
        out = []
        for t in ids:
            if t == DELIM:
                out.append("\n")
            elif t == REVISE:
                out.append("revise\n")
            elif _ACTION0 <= t < _PROBLEM0:
                out.append(chr(ord("A") + t - _ACTION0))
            elif t >= _PROBLEM0:
                out.append(f"P{t - _PROBLEM0}\n")
        return "".join(out)

    # ------------------------------------------------------------------ sampling
    def _pick(self, probs: list[float], req: StepRequest, index: int, draw: int) -> int:
        sp = req.sampling
        if sp.temperature == 0:
            return max(range(len(probs)), key=lambda a: (probs[a], -a))
        logits = [math.log(p) / sp.temperature if p > 0 else -math.inf for p in probs]
        m = max(logits)
        q = [math.exp(x - m) for x in logits]
        order = sorted(range(len(q)), key=lambda a: (-q[a], a))
        if sp.top_k:
            for a in order[sp.top_k:]:
                q[a] = 0.0
        if sp.top_p < 1.0:
            # Keep the smallest most-likely set whose mass reaches top_p.
            total, acc = sum(q), 0.0
            for a in order:
                if acc >= sp.top_p * total:
                    q[a] = 0.0
                else:
                    acc += q[a]
        s = sum(q)
        u = _uniform(sp.seed or 0, index, draw) * s
        acc = 0.0
        for a in range(len(q)):
            acc += q[a]
            if u < acc:
                return a
        return max(a for a in range(len(q)) if q[a] > 0)

    def _sample(self, req: StepRequest, index: int) -> StepCandidate:
        prefix = req.prefix
        if len(prefix) < 2 or prefix[0] != BOS or prefix[1] < _PROBLEM0:
            raise ValueError(f"ToyPolicy: not a toy prompt: {prefix[:2]}")
        pid = prefix[1] - _PROBLEM0
        revisions = prefix.count(REVISE)
        depth = len(self.actions(prefix[2:]))
        if prefix[-1] == EOS:
            raise ValueError("ToyPolicy: asked to continue a finished completion")
        toks: list[int] = []
        logprob = 0.0
        draw = 0
        while True:
            if depth >= self.horizon:
                toks.append(EOS)
                finished, reason = True, "eos"
                break
            probs = self.step_probs(pid, depth, revisions)
            a = self._pick(probs, req, index, draw)
            toks += self.step_tokens(a)
            logprob += math.log(probs[a])
            depth += 1
            draw += 1
            if not req.to_end:
                finished, reason = False, "stop"
                break
        if len(toks) > req.max_new_tokens:
            toks = toks[:req.max_new_tokens]
            finished, reason = False, "length"
        return StepCandidate(tuple(toks), logprob, finished, reason)

    def _reuse(self, prefix: tuple[int, ...]) -> int:
        best = 0
        for n in range(1, len(prefix) + 1):
            if prefix[:n] in self._seen:
                best = n
        return best

    def generate(self, requests: Sequence[StepRequest]) -> list[StepOutput]:
        """Sample every request (see the module docstring); counts a simulated prefix
        cache: a prefix token is *reused* when an earlier request's sequence contained it."""
        reqs = list(requests)
        self.calls.append(len(reqs))
        out = []
        for r in reqs:
            cands = tuple(self._sample(r, i) for i in range(r.n))
            reused = self._reuse(r.prefix)
            for c in cands:
                seq = r.prefix + c.tokens
                for n in range(1, len(seq) + 1):
                    self._seen.add(seq[:n])
            out.append(StepOutput(cands, prefilled_tokens=len(r.prefix) - reused,
                                  reused_tokens=reused))
            self.stats.requests += 1
            self.stats.samples += r.n
            self.stats.generated_tokens += sum(len(c.tokens) for c in cands)
            self.stats.prefilled_tokens += len(r.prefix) - reused
            self.stats.reused_tokens += reused
        self.stats.calls += 1
        return out

    # ------------------------------------------------------------------ answers
    def answer(self, problem: ToyProblem, completion: Sequence[int]) -> Hashable | None:
        """The completion's actions as a string (e.g. ``"ACB"``), None unless it ends in EOS."""
        toks = list(completion)
        if not toks or toks[-1] != EOS:
            return None
        return "".join(chr(ord("A") + a) for a in self.actions(toks))


class ToyVerifier:
    """Outcome reward: 1.0 when a finished completion's actions equal the target, else 0."""

    def __init__(self, policy: ToyPolicy) -> None:
        self.policy = policy
        self.calls = 0

    def evaluate(self, requests: Sequence[EvalRequest]) -> list[float]:
        """One reward per request."""
        self.calls += 1
        out = []
        for r in requests:
            ok = (r.finished and r.completion and r.completion[-1] == EOS
                  and tuple(self.policy.actions(r.completion)) == r.problem.target)
            out.append(1.0 if ok else 0.0)
        return out


class ToyPRM:
    """Process reward: the fraction of target steps matched so far (leading steps only);
    a finished completion gets its outcome reward."""

    def __init__(self, policy: ToyPolicy) -> None:
        self.policy = policy
        self.verifier = ToyVerifier(policy)
        self.calls = 0

    def evaluate(self, requests: Sequence[EvalRequest]) -> list[float]:
        """One value per request in [0, 1]."""
        self.calls += 1
        out = []
        for r in requests:
            if r.finished:
                out += self.verifier.evaluate([r])
                continue
            acts = self.policy.actions(r.completion)
            k = 0
            for a, t in zip(acts, r.problem.target):
                if a != t:
                    break
                k += 1
            out.append(k / self.policy.horizon)
        return out
