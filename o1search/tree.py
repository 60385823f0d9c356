"""The search tree over reasoning steps (native, in ``o1search._core``).

A :class:`SearchTree` stores nodes as arrays indexed by 32-bit ids. Node 0 is the root and
owns the prompt tokens; every other node owns the token ids of one reasoning step, so the
prefix to extend at a node is ``path_tokens(node)``. Ids are handed out in increasing order
and never reused (a pruned id raises :class:`o1search.StaleHandleError`).

Selection rule (batched PUCT with virtual loss). From the root, while the node has children,
descend into the *open* child with the highest score (ties: lowest id)::

    Ne(x)    = N(x) + V(x)                              # V: pending selections through x
    Q(c)     = (W(c) - virtual_loss * V(c)) / Ne(c)      # 0 when Ne(c) == 0
    Q(c)     = (Q(c) - lo) / (hi - lo)                    # only with min_max=True, hi > lo
    U(c)     = c_puct * P(c) * sqrt(max(Ne(parent), 1)) / (1 + Ne(c))
    score(c) = Q(c) + U(c)

``N`` is the visit count, ``W`` the sum of backed-up values, ``P`` the prior, and ``lo`` /
``hi`` the smallest / largest value ever passed to :meth:`backup` (MuZero-style min-max
normalization). A node is *open* when it is a leaf that is neither terminal nor in flight, or
when one of its children is open; ``select(k)`` returns up to ``k`` distinct open leaves, adds
``V += 1`` along each path and marks each leaf in flight until :meth:`backup` or
:meth:`revert_virtual_loss` clears it.

Backups are single-agent (no sign flip): ``backup(node, v)`` adds one visit and ``v`` to the
node and every ancestor, and clears the pending selection of the nearest in-flight node on
that path (the node itself or an ancestor), so both "back up the expanded leaf" and "back up
each new child" work.

Every method validates its input before changing anything; bad input raises ``ValueError``,
``IndexError`` (unknown id), ``TypeError`` (wrong kind of data) or ``StaleHandleError``
(pruned id). Methods that walk or change the tree release the GIL (except when their work is
bounded to a few microseconds, where releasing it would cost more than the call); each tree has
its own mutex, so trees may be shared between threads.
"""

from __future__ import annotations

from typing import Any


from o1search._native import core as _core

__all__ = ["SearchTree"]


def _restore(cls: type, data: bytes) -> "SearchTree":
    # Module-level so that pickle can find it.
    return cls.from_bytes(data)


class SearchTree(_core.SearchTree):
    """Search tree over reasoning steps; see the module docstring for the selection rule.

    Parameters
    ----------
    root_tokens : array-like of int, shape [T]
        The prompt, owned by the root (id 0); values in [0, 2**31-1]; may be empty.

    Raises
    ------
    TypeError
        For non-integer tokens. ``ValueError`` for negative or too large token ids, or a
        non-1-D array.

    Notes
    -----
    Methods (documented on each): ``add_children``, ``add_children_flat``, ``select``,
    ``backup``, ``revert_virtual_loss``, ``set_terminal``, ``prune``; accessors ``path_tokens``,
    ``step_tokens``, ``parent``, ``children``, ``num_children``, ``depth``, ``visits``,
    ``value``, ``value_sum``, ``prior``, ``is_terminal``, ``reward``, ``in_flight``,
    ``virtual_loss_count``, ``best_child``, ``leaves``; ``num_nodes``, ``num_slots``,
    ``min_value``, ``max_value``, ``len(tree)``, ``node in tree``; ``check``, ``to_bytes``,
    ``from_bytes``, ``to_dict``; pickling. Accessors given an int return a Python scalar and
    given an array-like of ids return a NumPy array of the same length.
    """

    # ``select(num, *, c_puct=1.25, virtual_loss=1.0, min_max=False)`` is inherited from the
    # native class: it is implemented there as a raw CPython method (documented in
    # ``help(SearchTree.select)``), because a Python wrapper here cost as much as selecting a
    # small batch in the MCTS loop.

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> "SearchTree":
        """Restore a tree saved with :meth:`to_bytes`.

        Parameters
        ----------
        data : bytes-like
            Output of ``to_bytes()`` (of this or a compatible format version).

        Returns
        -------
        SearchTree
            A tree that behaves exactly like the saved one (in-flight selections, min/max
            statistics and pruned ids included).

        Raises
        ------
        TypeError
            When ``data`` is not bytes-like.
        ValueError
            For garbage, truncated or corrupted data, or an unsupported format version.
        """
        tree = cls(())
        tree._load_bytes(data)
        return tree

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), self.to_bytes()))

    def __repr__(self) -> str:
        return f"SearchTree(num_nodes={self.num_nodes}, num_slots={self.num_slots})"
