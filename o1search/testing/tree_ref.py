"""Pure-Python reference model of :class:`o1search.SearchTree`.

Same public API, same semantics, same errors and the same ``to_bytes`` format as the native
tree, written for clarity: per-node Python lists, children as lists of ids. The property tests
run random operation sequences against both and require identical results (ids, selections,
statistics, bytes); the tree benchmark uses it as its baseline.

Floating-point expressions are evaluated in exactly the order the C++ code uses, so PUCT
scores (and therefore tie-breaks) agree bit for bit.
"""

from __future__ import annotations

import math
import struct
import zlib
from typing import Any, Sequence

import numpy as np

from o1search._native import InternalError, StaleHandleError

__all__ = ["SearchTree"]

_I32_MAX = 2**31 - 1
_MAGIC = b"O1STREE\x00"
_VERSION = 1
_HEADER = struct.Struct("<8sIIqqdd")
_SLOT_BYTES = 4 + 1 + 8 + 8 + 8 + 8 + 4
_INF = math.inf


def _is_int_scalar(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _int_scalar(x: Any, what: str) -> int:
    if not _is_int_scalar(x):
        raise TypeError(f"{what}: expected an integer, got {type(x).__name__}")
    v = int(x)
    if not -(2**63) <= v < 2**63:
        raise ValueError(f"{what}: integer out of range")
    return v


def _node_id(x: Any, what: str) -> int:
    try:
        v = _int_scalar(x, what)
    except ValueError:
        raise IndexError(f"{what}: node id does not exist") from None
    if v < 0 or v > _I32_MAX:
        raise IndexError(f"{what}: node id {v} does not exist")
    return v


def _to_numpy(x: Any, what: str) -> np.ndarray:
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{what}: expected a sequence of numbers, got a string")
    try:
        return np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{what}: expected an array-like of numbers ({exc})") from None


def _int_list(x: Any, what: str, lo: int = -(2**31), hi: int = _I32_MAX) -> list[int]:
    a = _to_numpy(x, what)
    if a.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D array, got {a.ndim} dimensions")
    if a.size == 0:
        return []
    if a.dtype.kind not in "iu":
        raise TypeError(f"{what}: expected integer values, got dtype {a.dtype}")
    out = a.tolist()
    for i, v in enumerate(out):
        if v < lo or v > hi:
            raise ValueError(f"{what}: value {v} at index {i} is outside [{lo}, {hi}]")
    return out


def _float_list(x: Any, what: str) -> list[float]:
    a = _to_numpy(x, what)
    if a.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D array, got {a.ndim} dimensions")
    if a.size == 0:
        return []
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{what}: expected real numbers, got dtype {a.dtype}")
    out = a.astype(np.float64).tolist()
    for i, v in enumerate(out):
        if not math.isfinite(v):
            raise ValueError(f"{what}: value at index {i} is not finite")
    return out


def _finite_scalar(x: Any, what: str) -> float:
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise TypeError(f"{what}: expected a real number")
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"{what}: value is not finite")
    return v


def _require_id_array(x: Any, what: str) -> None:
    if isinstance(x, np.ndarray):
        return
    if isinstance(x, (str, bytes)) or not hasattr(x, "__getitem__") or not hasattr(x, "__len__"):
        raise TypeError(
            f"{what}: expected a node id (int) or an array-like of ids, got {type(x).__name__}"
        )


def _node_list(x: Any, what: str, n_expected: int = -1) -> list[int]:
    if _is_int_scalar(x):
        v = _node_id(x, what)
        return [v] * (1 if n_expected < 0 else n_expected)
    _require_id_array(x, what)
    ids = _int_list(x, what)
    if n_expected >= 0 and len(ids) != n_expected:
        raise ValueError(f"{what}: expected {n_expected} entries, got {len(ids)}")
    return ids


def _value_list(x: Any, what: str, scalar_ok: bool, n: int) -> list[float]:
    if scalar_ok and not isinstance(x, (np.ndarray, list, tuple, str, bytes)):
        return [_finite_scalar(x, what)] * n
    vals = _float_list(x, what)
    if len(vals) != n:
        raise ValueError(f"{what}: expected {n} values, got {len(vals)}")
    return vals


class SearchTree:
    """Reference search tree; see :class:`o1search.SearchTree` for the full contract."""

    def __init__(self, root_tokens: Any) -> None:
        self._reset()
        toks = _int_list(root_tokens, "root_tokens", 0, _I32_MAX)
        self._new_slot(-1, 0, toks, 1.0)
        self.open[0] = True
        self.live = 1

    # ---- internal state -------------------------------------------------------------------

    def _reset(self) -> None:
        self.up: list[int] = []
        self.kids: list[list[int]] = []
        self.depth_: list[int] = []
        self.toks: list[list[int]] = []
        self.prior_: list[float] = []
        self.visits_: list[int] = []
        self.wsum: list[float] = []
        self.reward_: list[float] = []
        self.alive: list[bool] = []
        self.terminal: list[bool] = []
        self.inflight: list[bool] = []
        self.open: list[bool] = []
        self.open_kids: list[int] = []
        self.vlc: list[int] = []
        self.live = 0
        self.lo = _INF
        self.hi = -_INF

    def _new_slot(self, par: int, dep: int, toks: list[int], prior: float) -> int:
        nid = len(self.alive)
        self.up.append(par)
        self.kids.append([])
        self.depth_.append(dep)
        self.toks.append(toks)
        self.prior_.append(prior)
        self.visits_.append(0)
        self.wsum.append(0.0)
        self.reward_.append(0.0)
        self.alive.append(True)
        self.terminal.append(False)
        self.inflight.append(False)
        self.open.append(False)
        self.open_kids.append(0)
        self.vlc.append(0)
        return nid

    def _live(self, nid: int, what: str) -> int:
        if nid < 0 or nid >= len(self.alive):
            raise IndexError(f"{what}: node id {nid} does not exist (tree has {len(self.alive)} ids)")
        if not self.alive[nid]:
            raise StaleHandleError(f"{what}: node {nid} was pruned")
        return nid

    def _calc_open(self, n: int) -> bool:
        if not self.alive[n]:
            return False
        if not self.kids[n]:
            return not (self.terminal[n] or self.inflight[n])
        return self.open_kids[n] > 0

    def _update_open(self, n: int) -> None:
        while n >= 0:
            now = self._calc_open(n)
            if now == self.open[n]:
                return
            self.open[n] = now
            p = self.up[n]
            if p < 0:
                return
            self.open_kids[p] += 1 if now else -1
            n = p

    def _drop_pending(self, t: int) -> None:
        x = t
        while x >= 0:
            self.vlc[x] -= 1
            x = self.up[x]
        self._update_open(t)

    # ---- mutation ---------------------------------------------------------------------------

    def add_children(self, parent: Any, steps: Sequence[Any], priors: Any) -> np.ndarray:
        """Add one child per step under `parent` (an int or one parent per step)."""
        if isinstance(steps, (str, bytes)) or not hasattr(steps, "__len__"):
            raise TypeError("add_children: steps must be a sequence of token arrays")
        step_lists = [
            _int_list(s, f"add_children: steps[{i}]", 0, _I32_MAX) for i, s in enumerate(steps)
        ]
        pr = _float_list(priors, "add_children: priors")
        if len(pr) != len(step_lists):
            raise ValueError(
                f"add_children: got {len(step_lists)} steps but {len(pr)} priors"
            )
        parents = _node_list(parent, "add_children: parent", len(step_lists))
        return self._add(parents, step_lists, pr)

    def add_children_flat(self, parents: Any, tokens: Any, lengths: Any, priors: Any) -> np.ndarray:
        """Flat form of :meth:`add_children` (steps concatenated, one length per child)."""
        tok = _int_list(tokens, "add_children_flat: tokens", 0, _I32_MAX)
        lens = _int_list(lengths, "add_children_flat: lengths", 0, _I32_MAX)
        pr = _float_list(priors, "add_children_flat: priors")
        if len(pr) != len(lens):
            raise ValueError(
                f"add_children_flat: got {len(lens)} lengths but {len(pr)} priors"
            )
        par = _node_list(parents, "add_children_flat: parents", len(lens))
        self._validate(par, pr)
        if sum(lens) != len(tok):
            raise ValueError(
                f"add_children_flat: lengths sum to {sum(lens)} but {len(tok)} tokens were given"
            )
        steps, off = [], 0
        for n in lens:
            steps.append(tok[off : off + n])
            off += n
        return self._add(par, steps, pr)

    def _check_parent(self, p: int) -> None:
        self._live(p, "add_children")
        if self.terminal[p]:
            raise ValueError(f"add_children: parent {p} is terminal")

    def _validate(self, parents: list[int], priors: list[float]) -> None:
        if len(self.alive) + len(parents) > _I32_MAX:
            raise ValueError("add_children: the tree would exceed 2^31-1 node ids")
        for i, p in enumerate(parents):
            self._check_parent(p)
            if not (math.isfinite(priors[i]) and priors[i] >= 0.0):
                raise ValueError(
                    f"add_children: prior at index {i} must be finite and >= 0, got {priors[i]}"
                )

    def _add(self, parents: list[int], steps: list[list[int]], priors: list[float]) -> np.ndarray:
        self._validate(parents, priors)
        ids = []
        for p, s, pr in zip(parents, steps, priors):
            c = self._new_slot(p, self.depth_[p] + 1, list(s), pr)
            self.kids[p].append(c)
            self.open[c] = True
            self.open_kids[p] += 1
            self._update_open(p)
            ids.append(c)
        self.live += len(ids)
        return np.asarray(ids, dtype=np.int32)

    def select(
        self, num: int, *, c_puct: float = 1.25, virtual_loss: float = 1.0, min_max: bool = False
    ) -> np.ndarray:
        """Batched PUCT selection with virtual loss (same rule as the native tree)."""
        k = _int_scalar(num, "select: num")
        c_puct = float(c_puct)
        vl = float(virtual_loss)
        if k < 0:
            raise ValueError(f"select: num must be >= 0, got {k}")
        if not (math.isfinite(c_puct) and c_puct >= 0):
            raise ValueError(f"select: c_puct must be finite and >= 0, got {c_puct}")
        if not (math.isfinite(vl) and vl >= 0):
            raise ValueError(f"select: virtual_loss must be finite and >= 0, got {vl}")
        norm = bool(min_max) and self.hi > self.lo
        lo, span = self.lo, self.hi - self.lo
        kids, open_, visits, vlc = self.kids, self.open, self.visits_, self.vlc
        wsum, prior, up = self.wsum, self.prior_, self.up
        out: list[int] = []
        for _ in range(k):
            if not open_[0]:
                break
            n = 0
            while kids[n]:
                sq = math.sqrt(max(float(visits[n] + vlc[n]), 1.0))
                best, best_score = -1, 0.0
                for c in kids[n]:
                    if not open_[c]:
                        continue
                    ne = visits[c] + vlc[c]
                    q = 0.0
                    if ne > 0:
                        q = (wsum[c] - vl * vlc[c]) / ne
                        if norm:
                            q = (q - lo) / span
                    u = c_puct * prior[c] * sq / (1.0 + ne)
                    s = q + u
                    if best < 0 or s > best_score:
                        best, best_score = c, s
                if best < 0:
                    raise InternalError(f"open node {n} has no open child")
                n = best
            x = n
            while x >= 0:
                vlc[x] += 1
                x = up[x]
            self.inflight[n] = True
            self._update_open(n)
            out.append(n)
        return np.asarray(out, dtype=np.int32)

    def backup(self, nodes: Any, values: Any) -> None:
        """Add a visit and the value along each path; clear the nearest pending selection."""
        scalar = _is_int_scalar(nodes)
        ids = _node_list(nodes, "backup: nodes")
        vals = _value_list(values, "backup: values", scalar, len(ids))
        for n in ids:
            self._live(n, "backup")
        for n, v in zip(ids, vals):
            owner = -1
            x = n
            while x >= 0:
                self.visits_[x] += 1
                self.wsum[x] += v
                if owner < 0 and self.inflight[x]:
                    self.inflight[x] = False
                    owner = x
                if owner >= 0:
                    self.vlc[x] -= 1
                x = self.up[x]
            if owner >= 0:
                self._update_open(owner)
            self.lo = min(self.lo, v)
            self.hi = max(self.hi, v)

    def revert_virtual_loss(self, nodes: Any) -> None:
        """Cancel the nearest pending selection on each node's path without a backup."""
        ids = _node_list(nodes, "revert_virtual_loss: nodes")
        for n in ids:
            self._live(n, "revert_virtual_loss")
        owners: list[int] = []
        for n in ids:
            x = n
            while x >= 0 and not self.inflight[x]:
                x = self.up[x]
            if x < 0:
                for o in owners:
                    self.inflight[o] = True
                raise ValueError(
                    f"revert_virtual_loss: node {n} has no pending selection on its path"
                )
            self.inflight[x] = False
            owners.append(x)
        for o in owners:
            self._drop_pending(o)

    def set_terminal(self, node: Any, reward: Any) -> None:
        """Mark node(s) terminal with a finite reward (nodes with children are rejected)."""
        scalar = _is_int_scalar(node)
        ids = _node_list(node, "set_terminal: node")
        vals = _value_list(reward, "set_terminal: reward", scalar, len(ids))
        for n in ids:
            self._live(n, "set_terminal")
        for n in ids:
            if self.kids[n]:
                raise ValueError(f"set_terminal: node {n} has children")
        for n, r in zip(ids, vals):
            self.terminal[n] = True
            self.reward_[n] = r
            self._update_open(n)

    def prune(self, node: Any) -> None:
        """Remove `node` and its subtree (ids become stale; never reused)."""
        x = self._live(_node_id(node, "prune"), "prune")
        if x == 0:
            raise ValueError("prune: the root cannot be pruned")
        p = self.up[x]
        pending = self.vlc[x]
        a = p
        while a >= 0:
            self.vlc[a] -= pending
            a = self.up[a]
        self.kids[p].remove(x)
        if self.open[x]:
            self.open_kids[p] -= 1
        stack = [x]
        while stack:
            y = stack.pop()
            stack.extend(self.kids[y])
            self.alive[y] = self.terminal[y] = self.inflight[y] = self.open[y] = False
            self.up[y] = -1
            self.kids[y] = []
            self.toks[y] = []
            self.open_kids[y] = self.vlc[y] = self.visits_[y] = 0
            self.wsum[y] = self.reward_[y] = self.prior_[y] = 0.0
            self.live -= 1
        self._update_open(p)

    # ---- queries ----------------------------------------------------------------------------

    def _id(self, node: Any, what: str) -> int:
        return self._live(_node_id(node, what), what)

    def _acc(self, node: Any, what: str, get: Any, dtype: Any) -> Any:
        if _is_int_scalar(node):
            return get(self._id(node, what))
        _require_id_array(node, what)
        ids = _int_list(node, what)
        return np.asarray([get(self._live(i, what)) for i in ids], dtype=dtype)

    def path_tokens(self, node: Any) -> np.ndarray:
        x = self._id(node, "path_tokens")
        parts = []
        while x >= 0:
            parts.append(self.toks[x])
            x = self.up[x]
        return np.asarray([t for part in reversed(parts) for t in part], dtype=np.int32)

    def step_tokens(self, node: Any) -> np.ndarray:
        return np.asarray(self.toks[self._id(node, "step_tokens")], dtype=np.int32)

    def children(self, node: Any) -> np.ndarray:
        return np.asarray(self.kids[self._id(node, "children")], dtype=np.int32)

    def parent(self, node: Any) -> Any:
        return self._acc(node, "parent", lambda i: self.up[i], np.int32)

    def depth(self, node: Any) -> Any:
        return self._acc(node, "depth", lambda i: self.depth_[i], np.int32)

    def num_children(self, node: Any) -> Any:
        return self._acc(node, "num_children", lambda i: len(self.kids[i]), np.int32)

    def visits(self, node: Any) -> Any:
        return self._acc(node, "visits", lambda i: self.visits_[i], np.int64)

    def _mean(self, i: int) -> float:
        return self.wsum[i] / self.visits_[i] if self.visits_[i] > 0 else 0.0

    def value(self, node: Any) -> Any:
        return self._acc(node, "value", self._mean, np.float64)

    def value_sum(self, node: Any) -> Any:
        return self._acc(node, "value_sum", lambda i: self.wsum[i], np.float64)

    def prior(self, node: Any) -> Any:
        return self._acc(node, "prior", lambda i: self.prior_[i], np.float64)

    def is_terminal(self, node: Any) -> Any:
        return self._acc(node, "is_terminal", lambda i: self.terminal[i], np.bool_)

    def reward(self, node: Any) -> Any:
        return self._acc(node, "reward", lambda i: self.reward_[i], np.float64)

    def in_flight(self, node: Any) -> Any:
        return self._acc(node, "in_flight", lambda i: self.inflight[i], np.bool_)

    def virtual_loss_count(self, node: Any) -> Any:
        return self._acc(node, "virtual_loss_count", lambda i: self.vlc[i], np.int32)

    def best_child(self, node: Any, by: str = "visits") -> int:
        x = self._id(node, "best_child")
        if by == "visits":
            key = lambda c: float(self.visits_[c])  # noqa: E731
        elif by == "value":
            key = self._mean
        else:
            raise ValueError(f"best_child: by must be 'visits' or 'value', got '{by}'")
        if not self.kids[x]:
            raise ValueError(f"best_child: node {x} has no children")
        best, best_key = -1, 0.0
        for c in self.kids[x]:
            k = key(c)
            if best < 0 or k > best_key:
                best, best_key = c, k
        return best

    def leaves(self) -> np.ndarray:
        return np.asarray(
            [i for i in range(len(self.alive)) if self.alive[i] and not self.kids[i]],
            dtype=np.int32,
        )

    @property
    def num_nodes(self) -> int:
        return self.live

    @property
    def num_slots(self) -> int:
        return len(self.alive)

    @property
    def min_value(self) -> float:
        return self.lo

    @property
    def max_value(self) -> float:
        return self.hi

    def __len__(self) -> int:
        return self.live

    def __contains__(self, node: object) -> bool:
        if not _is_int_scalar(node):
            return False
        v = int(node)  # type: ignore[call-overload]
        return 0 <= v < len(self.alive) and self.alive[v]

    def to_dict(self) -> dict[str, Any]:
        nodes = []
        for i in range(len(self.alive)):
            if not self.alive[i]:
                continue
            nodes.append(
                {
                    "id": i,
                    "parent": self.up[i],
                    "depth": self.depth_[i],
                    "tokens": list(self.toks[i]),
                    "prior": self.prior_[i],
                    "visits": self.visits_[i],
                    "value": self._mean(i),
                    "reward": self.reward_[i],
                    "terminal": self.terminal[i],
                    "children": list(self.kids[i]),
                }
            )
        return {"root": 0, "nodes": nodes}

    def check(self) -> None:
        """Raise InternalError if an invariant is broken (recomputes everything)."""

        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise InternalError(msg)

        n = len(self.alive)
        need(n >= 1 and self.alive[0] and self.up[0] == -1 and self.depth_[0] == 0, "root")
        need(
            (self.lo == _INF and self.hi == -_INF)
            or (math.isfinite(self.lo) and math.isfinite(self.hi) and self.lo <= self.hi),
            "min/max",
        )
        kid_visits = [0] * n
        below = [0] * n
        open_count = [0] * n
        live = 0
        for i in range(n - 1, -1, -1):
            if not self.alive[i]:
                need(not (self.terminal[i] or self.inflight[i] or self.open[i]), f"dead {i}")
                continue
            live += 1
            p = self.up[i]
            if i > 0:
                need(0 <= p < i and self.alive[p] and i in self.kids[p], f"node {i} parent")
                need(self.depth_[i] == self.depth_[p] + 1, f"node {i} depth")
                need(math.isfinite(self.prior_[i]) and self.prior_[i] >= 0, f"node {i} prior")
            need(self.kids[i] == sorted(set(self.kids[i])), f"node {i} child order")
            for c in self.kids[i]:
                need(self.alive[c] and self.up[c] == i, f"node {i} child {c}")
            need(self.visits_[i] >= kid_visits[i], f"node {i} visits")
            need(self.visits_[i] > 0 or self.wsum[i] == 0.0, f"node {i} value sum")
            need(self.terminal[i] or self.reward_[i] == 0.0, f"node {i} reward")
            need(not (self.terminal[i] and self.kids[i]), f"terminal {i} has children")
            vl = below[i] + (1 if self.inflight[i] else 0)
            need(self.vlc[i] == vl, f"node {i} virtual-loss count {self.vlc[i]} != {vl}")
            need(self.open_kids[i] == open_count[i], f"node {i} open count")
            o = open_count[i] > 0 if self.kids[i] else not (self.terminal[i] or self.inflight[i])
            need(o == self.open[i], f"node {i} open flag")
            if p >= 0:
                kid_visits[p] += self.visits_[i]
                below[p] += vl
                open_count[p] += 1 if o else 0
        need(live == self.live, "live count")

    # ---- persistence ------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Serialize in the native format (byte-identical to the native tree's output)."""
        n = len(self.alive)
        al = self.alive
        toks = [t for i in range(n) if al[i] for t in self.toks[i]]
        parts = [
            _HEADER.pack(_MAGIC, _VERSION, 0, n, len(toks), self.lo, self.hi),
            struct.pack(f"<{n}i", *[self.up[i] if al[i] else -1 for i in range(n)]),
            bytes(
                (1 if al[i] else 0) | (2 if self.terminal[i] else 0) | (4 if self.inflight[i] else 0)
                for i in range(n)
            ),
            struct.pack(f"<{n}d", *[self.prior_[i] if al[i] else 0.0 for i in range(n)]),
            struct.pack(f"<{n}q", *[self.visits_[i] if al[i] else 0 for i in range(n)]),
            struct.pack(f"<{n}d", *[self.wsum[i] if al[i] else 0.0 for i in range(n)]),
            struct.pack(f"<{n}d", *[self.reward_[i] if al[i] else 0.0 for i in range(n)]),
            struct.pack(f"<{n}i", *[len(self.toks[i]) if al[i] else 0 for i in range(n)]),
            struct.pack(f"<{len(toks)}i", *toks),
        ]
        body = b"".join(parts)
        return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)

    @classmethod
    def from_bytes(cls, data: Any) -> "SearchTree":
        """Parse :meth:`to_bytes` output; ValueError for anything malformed."""
        if isinstance(data, str) or not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("SearchTree.from_bytes: expected bytes, bytearray or memoryview")
        b = bytes(data)
        E = "SearchTree.from_bytes: "
        if len(b) < _HEADER.size + 4:
            raise ValueError(E + f"data too short ({len(b)} bytes)")
        magic, version, reserved, n, ntok, lo, hi = _HEADER.unpack_from(b, 0)
        if magic != _MAGIC:
            raise ValueError(E + "not a SearchTree serialization (bad magic)")
        if version != _VERSION:
            raise ValueError(E + f"unsupported format version {version}")
        if reserved != 0:
            raise ValueError(E + "reserved header field is not 0")
        if not 1 <= n <= _I32_MAX:
            raise ValueError(E + f"bad node count {n}")
        fixed = _HEADER.size + _SLOT_BYTES * n + 4
        if ntok < 0 or fixed + 4 * ntok != len(b):
            raise ValueError(E + "size does not match the header")
        if zlib.crc32(b[:-4]) & 0xFFFFFFFF != struct.unpack_from("<I", b, len(b) - 4)[0]:
            raise ValueError(E + "checksum mismatch (corrupted data)")
        if not (
            (lo == _INF and hi == -_INF) or (math.isfinite(lo) and math.isfinite(hi) and lo <= hi)
        ):
            raise ValueError(E + "bad min/max statistics")
        off = _HEADER.size
        par = struct.unpack_from(f"<{n}i", b, off)
        off += 4 * n
        fl = b[off : off + n]
        off += n
        pri = struct.unpack_from(f"<{n}d", b, off)
        off += 8 * n
        vis = struct.unpack_from(f"<{n}q", b, off)
        off += 8 * n
        ws = struct.unpack_from(f"<{n}d", b, off)
        off += 8 * n
        rw = struct.unpack_from(f"<{n}d", b, off)
        off += 8 * n
        lens = struct.unpack_from(f"<{n}i", b, off)
        off += 4 * n
        toks = struct.unpack_from(f"<{ntok}i", b, off)
        t = cls.__new__(cls)
        t._reset()
        t.lo, t.hi = lo, hi
        pos = 0
        for i in range(n):
            f = fl[i]
            if f & ~7:
                raise ValueError(E + f"node {i} bad flags")
            if not f & 1:
                if i == 0:
                    raise ValueError(E + "the root is missing")
                if not (
                    f == 0 and par[i] == -1 and pri[i] == 0.0 and vis[i] == 0 and ws[i] == 0.0
                    and rw[i] == 0.0 and lens[i] == 0
                ):
                    raise ValueError(E + f"pruned slot {i} has data")
                t._new_slot(-1, 0, [], 0.0)
                t.alive[i] = False
                continue
            p = par[i]
            if i == 0:
                if p != -1:
                    raise ValueError(E + "root has a parent")
            elif not (0 <= p < i and t.alive[p] and not t.terminal[p]):
                raise ValueError(E + f"node {i} has an invalid parent {p}")
            if not (math.isfinite(pri[i]) and pri[i] >= 0.0):
                raise ValueError(E + f"node {i} has an invalid prior")
            if not (vis[i] >= 0 and not math.isnan(ws[i]) and (vis[i] > 0 or ws[i] == 0.0)):
                raise ValueError(E + f"node {i} has invalid statistics")
            if not (math.isfinite(rw[i]) and (f & 2 or rw[i] == 0.0)):
                raise ValueError(E + f"node {i} has an invalid reward")
            if not 0 <= lens[i] <= ntok - pos:
                raise ValueError(E + f"node {i} has an invalid token count")
            step = list(toks[pos : pos + lens[i]])
            pos += lens[i]
            t._new_slot(p, t.depth_[p] + 1 if p >= 0 else 0, step, pri[i])
            t.terminal[i] = bool(f & 2)
            t.inflight[i] = bool(f & 4)
            t.visits_[i] = vis[i]
            t.wsum[i] = ws[i]
            t.reward_[i] = rw[i]
            if p >= 0:
                t.kids[p].append(i)
            t.live += 1
        if pos != ntok:
            raise ValueError(E + "token counts do not add up")
        if any(x < 0 for x in toks):
            raise ValueError(E + "negative token id")
        kid_visits = [0] * n
        for i in range(n - 1, -1, -1):
            if not t.alive[i]:
                continue
            if t.terminal[i] and t.kids[i]:
                raise ValueError(E + f"terminal node {i} has children")
            if t.visits_[i] < kid_visits[i]:
                raise ValueError(E + f"node {i} has fewer visits than its children")
            if t.inflight[i]:
                t.vlc[i] += 1
            o = t._calc_open(i)
            t.open[i] = o
            p = t.up[i]
            if p >= 0:
                t.vlc[p] += t.vlc[i]
                kid_visits[p] += t.visits_[i]
                t.open_kids[p] += 1 if o else 0
        t.check()
        return t

    def __reduce__(self) -> Any:
        return (type(self).from_bytes, (self.to_bytes(),))

    def __repr__(self) -> str:
        return f"tree_ref.SearchTree(num_nodes={self.live}, num_slots={len(self.alive)})"

