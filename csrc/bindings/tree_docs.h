// Docstrings of the SearchTree methods bound in tree_py.cc and tree_select_py.cc (the long
// ones; one-line docstrings stay beside their .def). o1search.SearchTree subclasses the bound
// class, so these are what help() shows.
#pragma once

namespace o1search::bindings::tree_docs {

inline constexpr const char* kClass = R"doc(Native search tree over reasoning steps (private; use o1search.SearchTree).)doc";

inline constexpr const char* kAddChildren = R"doc(Add children, one per step.

Parameters
----------
parent : int or array-like of int, shape [C]
    One parent for all steps, or one parent per step (expands many leaves in one call).
steps : sequence of C int array-likes
    Token ids of each child's step, each in [0, 2**31-1]; an empty step is allowed.
priors : array-like of float, shape [C]
    Finite, >= 0.

Returns
-------
np.ndarray[int32], shape [C]: the new node ids (ascending, in input order).

Raises
------
IndexError (unknown parent), StaleHandleError (pruned parent), ValueError (terminal parent,
bad prior, negative/huge token, length mismatch), TypeError (non-integer tokens). Nothing
changes when an error is raised.)doc";

inline constexpr const char* kAddChildrenFlat = R"doc(Add children from flat arrays (the hot-loop form of add_children).

Parameters
----------
parents : int or array-like of int, shape [C]
tokens : array-like of int, shape [sum(lengths)]
    All steps concatenated, in child order.
lengths : array-like of int, shape [C]
    Token count of each child's step (>= 0).
priors : array-like of float, shape [C]

Returns
-------
np.ndarray[int32], shape [C]: the new node ids.

Raises
------
Same as add_children; also ValueError when sum(lengths) != len(tokens).)doc";

inline constexpr const char* kSelect = R"doc(select($self, /, num, *, c_puct=1.25, virtual_loss=1.0, min_max=False)
--

Select up to ``num`` distinct leaves to expand (batched PUCT with virtual loss).

Descends from the root into the open child with the highest score (module docstring),
ties to the lowest id. Each selected leaf gets one pending selection on every node of
its path and is marked in flight until :meth:`backup` or :meth:`revert_virtual_loss`,
so one batch spreads over distinct paths. Terminal and in-flight leaves are never
returned; subtrees without open leaves are skipped without being scanned.

Parameters
----------
num : int
    Maximum number of leaves, >= 0.
c_puct : float
    Exploration weight, finite and >= 0.
virtual_loss : float
    Value subtracted per pending selection when scoring, finite and >= 0.
min_max : bool
    Normalize Q by the min/max of all backed-up values (MuZero style).

Returns
-------
np.ndarray[int32], shape [k], k <= num
    The selected leaves in selection order (empty when nothing is open).

Raises
------
ValueError
    For ``num < 0`` or a negative / non-finite ``c_puct`` or ``virtual_loss``.
TypeError
    When ``num`` is not an integer.)doc";

inline constexpr const char* kPrivateSelect = "select(num, c_puct, virtual_loss, min_max) with "
                                          "positional arguments only (see select).";

inline constexpr const char* kBackup = R"doc(Back up values: for each (node, value) in order, add one visit and `value` to the node and
all its ancestors, and remove the pending selection of the nearest in-flight node on that path
(the node itself or an ancestor), if any.

Parameters
----------
nodes : int or array-like of int, shape [B]
values : float or array-like of float, shape [B]; finite.

Raises
------
IndexError, StaleHandleError, ValueError (non-finite value, length mismatch); nothing changes
on error.)doc";

inline constexpr const char* kRevertVirtualLoss = R"doc(Cancel selections without backing anything up: for each node in order, clear the pending
selection of the nearest in-flight node on its path (itself or an ancestor).

Raises
------
ValueError when an entry has no pending selection on its path (nothing changes then);
IndexError, StaleHandleError for bad ids.)doc";

inline constexpr const char* kSetTerminal = R"doc(Mark node(s) terminal with a reward.

Parameters
----------
node : int or array-like of int, shape [B]
reward : float or array-like of float, shape [B]; finite.

Raises
------
ValueError when a node has children or a reward is not finite; IndexError, StaleHandleError.)doc";

inline constexpr const char* kPrune = R"doc(Remove `node` and its subtree. Their ids raise StaleHandleError afterwards and are never
reused; pending selections inside are cancelled; statistics already backed up stay in the
ancestors. Raises ValueError for the root.)doc";

}  // namespace o1search::bindings::tree_docs
