"""A self-contained HTML viewer of one search tree (``SearchTree.to_dict()``).

The page needs nothing from the network: CSS and the few lines of JavaScript are inline,
and the tree is plain nested ``<details>`` elements, so it also reads (collapsible) with
scripts disabled. Each node shows its decoded step text, visits, mean value, reward, prior
and terminal flag; the chosen path (root → the search's answer) is highlighted and open.

Step text is model output, hence untrusted: every piece of text goes through
:func:`html.escape`, and no data is placed inside the ``<script>`` element.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["chosen_path", "render_tree_html", "write_tree_html"]

_NODE_KEYS = ("id", "parent", "tokens", "children")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.2em;color:#1d1d1f;
background:#fafafa}
h1{font-size:1.25em;margin:0 0 .3em}
.meta{color:#555;font-size:.9em;margin-bottom:.6em}
.meta td{padding:0 1em 0 0}
.toolbar{margin:.5em 0 1em}
.toolbar button,.toolbar label{font-size:.85em;margin-right:.6em}
details{margin-left:1.1em;border-left:1px dotted #bbb;padding-left:.4em}
details.root{margin-left:0;border-left:none}
summary{cursor:pointer;list-style-position:outside;padding:1px 0}
summary.leaf{list-style:none}
.step{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:pre-wrap;
background:#fff;border:1px solid #ddd;border-radius:3px;padding:0 .3em}
.stats{color:#666;font-size:.8em;margin-left:.5em}
.ids{display:none;color:#8a5a00;font-size:.75em;font-family:ui-monospace,monospace;
margin-left:.5em}
body.show-ids .ids{display:inline}
.chosen>summary .step{background:#fff4c2;border-color:#e0b400;font-weight:600}
.chosen>summary::before{content:"\\2605 ";color:#c99700}
.terminal>summary .stats::after{content:" [terminal]";color:#a33}
.ok>summary .stats::after{content:" [terminal, reward 1]";color:#1a7f37}
.truncated{color:#a33;font-style:italic}
.bar{display:inline-block;height:.7em;border-radius:2px;margin-right:.4em;vertical-align:middle}
.false-step>summary .step{background:#ffe3e3;border-color:#d33;text-decoration:underline wavy #d33}
.false-step>summary::after{content:" \2717 the verifier's false step";color:#c00;font-size:.8em}
body.chosen-only details:not(.chosen){display:none}
"""

# Only behaviour lives here; no tree data (so nothing untrusted is ever inside <script>).
_JS = """
function setAll(open){document.querySelectorAll('details').forEach(function(d){d.open=open;});}
function openChosen(){document.querySelectorAll('details').forEach(function(d){
  d.open=d.classList.contains('chosen');});}
document.getElementById('expand-all').onclick=function(){setAll(true);};
document.getElementById('collapse-all').onclick=function(){setAll(false);};
document.getElementById('chosen-path').onclick=openChosen;
document.getElementById('toggle-ids').onchange=function(e){
  document.body.classList.toggle('show-ids',e.target.checked);};
document.getElementById('toggle-chosen-only').onchange=function(e){
  document.body.classList.toggle('chosen-only',e.target.checked);};
document.body.setAttribute('data-viewer','ready');
"""


def _as_dict(tree: Any) -> dict[str, Any]:
    """``tree.to_dict()`` for a tree, the mapping itself for a dict; validated."""
    d = tree.to_dict() if callable(getattr(tree, "to_dict", None)) else tree
    if not isinstance(d, Mapping) or "nodes" not in d:
        raise TypeError("tree must be a SearchTree or the dict of SearchTree.to_dict() "
                        f"(with 'root' and 'nodes'), got {type(tree).__name__}")
    nodes = d["nodes"]
    if not isinstance(nodes, Sequence) or not nodes:
        raise ValueError("tree dict has no nodes")
    for i, n in enumerate(nodes):
        if not isinstance(n, Mapping) or any(k not in n for k in _NODE_KEYS):
            raise ValueError(f"tree dict node {i} lacks one of {_NODE_KEYS}")
        if n["id"] != i:
            raise ValueError(f"tree dict node {i} has id {n['id']}; nodes must be listed by id")
    root = int(d.get("root", 0))
    if not 0 <= root < len(nodes):
        raise ValueError(f"tree dict root {root} is not a node")
    return {"root": root, "nodes": list(nodes)}


def chosen_path(tree: Any, node: int | None) -> list[int]:
    """Node ids from the root down to ``node`` (inclusive).

    Parameters:
        tree: a :class:`o1search.SearchTree` or its ``to_dict()``.
        node: the chosen node (e.g. ``SearchResult.node``), or None / -1 for no chosen path.

    Returns:
        ``[root, ..., node]``; ``[]`` when ``node`` is None or negative.

    Raises:
        ValueError: ``node`` is not a node of the tree, or the parent links form a cycle.
    """
    d = _as_dict(tree)
    if node is None or node < 0:
        return []
    nodes = d["nodes"]
    if node >= len(nodes):
        raise ValueError(f"chosen node {node} is not in the tree ({len(nodes)} nodes)")
    path = [int(node)]
    while path[-1] != d["root"]:
        parent = int(nodes[path[-1]]["parent"])
        if parent < 0 or len(path) > len(nodes):
            raise ValueError(f"node {node} does not lead back to the root")
        path.append(parent)
    return path[::-1]


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.3f}"
    return str(x)


def render_tree_html(
    tree: Any,
    *,
    decode: Callable[[Sequence[int]], str] | None = None,
    chosen: int | Iterable[int] | None = None,
    title: str = "o1search search tree",
    meta: Mapping[str, Any] | None = None,
    open_depth: int = 1,
    max_nodes: int = 20000,
    mark: str | None = None,
) -> str:
    """A self-contained HTML page showing a search tree.

    Parameters:
        tree: a :class:`o1search.SearchTree` or the dict of its ``to_dict()``
            (``{"root", "nodes": [{"id", "parent", "depth", "tokens", "prior", "visits",
            "value", "reward", "terminal", "children"}]}``).
        decode: token ids → text (e.g. ``o1search.search.make_decoder(tokenizer)``); without
            it a node shows its token ids.
        chosen: the chosen node (its path from the root is highlighted), or an explicit
            list of node ids to highlight, or None.
        title: page title (escaped).
        meta: extra key/value lines shown above the tree (e.g. problem, answer, algorithm;
            escaped).
        open_depth: subtrees down to this depth start open (the chosen path always does).
        max_nodes: render at most this many nodes (depth-first); the page says when it
            stopped early.
        mark: text of a step the verifier found false (e.g. ``"12+56=89"`` from its
            reason): nodes of the chosen path whose step contains it are marked in red.

    Each node also shows its visits as a bar (width relative to the most visited node) whose
    colour is its value (red 0 -> green 1).

    Returns:
        The HTML document as a string (UTF-8, no external URLs).

    Raises:
        TypeError: ``tree`` is neither a tree nor a tree dict.
        ValueError: a malformed tree dict, a chosen node not in the tree, or
            ``max_nodes < 1``.
    """
    if max_nodes < 1:
        raise ValueError(f"max_nodes must be >= 1, got {max_nodes}")
    d = _as_dict(tree)
    nodes, root = d["nodes"], d["root"]
    if chosen is None or isinstance(chosen, int):
        highlight = set(chosen_path(d, chosen))
    else:
        highlight = {int(c) for c in chosen}
        bad = [c for c in highlight if not 0 <= c < len(nodes)]
        if bad:
            raise ValueError(f"chosen nodes {sorted(bad)} are not in the tree")

    def text_of(tokens: Sequence[int]) -> str:
        if decode is None:
            return " ".join(str(int(t)) for t in tokens)
        return decode([int(t) for t in tokens])

    out: list[str] = []
    esc = html.escape
    most = max([float(n.get("visits", 0) or 0) for n in nodes] + [1.0])
    # Depth-first, iteratively (trees can be deeper than Python's recursion limit). A stack
    # entry is a node id, or a closing marker (-1) for a <details> opened earlier.
    stack: list[int] = [root]
    rendered = 0
    truncated = False
    while stack:
        nid = stack.pop()
        if nid == -1:
            out.append("</details>")
            continue
        if rendered >= max_nodes:
            truncated = True
            continue
        rendered += 1
        n = nodes[nid]
        kids = [int(c) for c in n["children"]]
        classes = ["node"]
        if nid == root:
            classes.append("root")
        if nid in highlight:
            classes.append("chosen")
        if n.get("terminal"):
            classes.append("ok" if float(n.get("reward", 0.0)) >= 1.0 else "terminal")
        step = text_of(n["tokens"])
        if mark and nid in highlight and nid != root and mark in step:
            classes.append("false-step")
        is_open = nid in highlight or int(n.get("depth", 0)) < open_depth
        label = "prompt" if nid == root else f"#{nid}"
        visits = float(n.get("visits", 0) or 0)
        value = min(1.0, max(0.0, float(n.get("value", 0.0) or 0.0)))
        bar = (f'<span class="bar" style="width:{max(2, round(60 * visits / most))}px;'
               f'background:hsl({round(120 * value)},65%,45%)" '
               f'title="visits {_fmt(visits)}, value {_fmt(value)}"></span>')
        stats = (f"{label} · visits {_fmt(n.get('visits', 0))} · value {_fmt(n.get('value', 0.0))}"
                 f" · reward {_fmt(n.get('reward', 0.0))} · prior {_fmt(n.get('prior', 0.0))}"
                 f" · {len(kids)} children")
        ids = " ".join(str(int(t)) for t in n["tokens"])
        out.append(
            f'<details class="{" ".join(classes)}" data-node="{nid}"'
            f'{" open" if is_open else ""}>'
            f'<summary{"" if kids else " class=leaf"}>{bar}<span class="step">{esc(step)}</span>'
            f'<span class="stats">{esc(stats)}</span>'
            f'<span class="ids">[{esc(ids)}]</span></summary>'
        )
        stack.append(-1)
        # Chosen child first, then by visits: the interesting branch reads top-down.
        kids.sort(key=lambda c: (c not in highlight, -int(nodes[c].get("visits", 0)), c))
        stack.extend(reversed(kids))
    meta_rows = "".join(
        f"<tr><td>{esc(str(k))}</td><td>{esc(str(v))}</td></tr>" for k, v in (meta or {}).items()
    )
    note = (f'<p class="truncated">showing the first {max_nodes} of {len(nodes)} nodes</p>'
            if truncated else "")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n<body>"
        f"<h1>{esc(title)}</h1>"
        f'<table class="meta">{meta_rows}<tr><td>nodes</td><td>{len(nodes)}</td></tr>'
        f"<tr><td>chosen path</td><td>{len(highlight)} nodes (highlighted &#9733;)</td></tr>"
        "</table>"
        '<div class="toolbar"><button id="expand-all" type="button">expand all</button>'
        '<button id="collapse-all" type="button">collapse all</button>'
        '<button id="chosen-path" type="button">open chosen path</button>'
        '<label><input id="toggle-chosen-only" type="checkbox"> chosen path only</label>'
        '<label><input id="toggle-ids" type="checkbox"> token ids</label></div>'
        f'<div id="tree">{"".join(out)}</div>{note}'
        f"<script>{_JS}</script></body></html>\n"
    )


def write_tree_html(path: str | os.PathLike[str], tree: Any, **kwargs: Any) -> Path:
    """Write :func:`render_tree_html` to ``path`` (UTF-8); parents are created.

    Parameters:
        path: the output file.
        tree: a tree or tree dict.
        **kwargs: as :func:`render_tree_html`.

    Returns:
        The path written.

    Raises:
        As :func:`render_tree_html`; OSError when the file cannot be written.
    """
    p = Path(os.fspath(path))
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_tree_html(tree, **kwargs), encoding="utf-8")
    return p
