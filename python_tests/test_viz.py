"""The HTML tree viewer and the plots (o1search.viz)."""

from __future__ import annotations

import html.parser
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from o1search import SearchTree
from o1search.viz import (
    chosen_path,
    plot_accuracy_vs_tokens,
    plot_learning_curves,
    render_tree_html,
    write_tree_html,
)

# Token id -> text of a toy vocabulary; ids 10.. are whole "steps" so the expected step
# text of every node is known exactly.
VOCAB = {1: "Q: 2+2? ", 10: "2+2=4\n", 11: "2+2=5\n", 12: "answer 4", 13: "answer 5",
         14: "<script>document.title='pwned'</script>", 15: "a & b \"q\" 'x'"}


def decode(ids):
    return "".join(VOCAB[int(t)] for t in ids)


def make_tree():
    """root(prompt) -> 1:'2+2=4' -> 3:'answer 4'; root -> 2:'2+2=5' -> 4:'answer 5';
    root -> 5:<script>; 1 -> 6: text with quotes and ampersand."""
    t = SearchTree([1])
    a, b, s = (int(x) for x in t.add_children(0, [[10], [11], [14]], [0.5, 0.3, 0.2]))
    (c,) = (int(x) for x in t.add_children(a, [[12]], [1.0]))
    (d,) = (int(x) for x in t.add_children(b, [[13]], [1.0]))
    (q,) = (int(x) for x in t.add_children(a, [[15]], [0.5]))
    t.backup([c], [1.0])
    t.backup([d], [0.0])
    t.set_terminal([c, d], [1.0, 0.0])
    return t, {"a": a, "b": b, "script": s, "c": c, "d": d, "q": q}


class _Collect(html.parser.HTMLParser):
    """Independent reading of the page: every <details> (node id, classes, summary text),
    every <script> body, every URL-bearing attribute."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.nodes = {}
        self.scripts = []
        self.urls = []
        self._stack = []
        self._in_script = False
        self._in_step = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("src", "href", "action", "data", "poster"):
            if k in a:
                self.urls.append(a[k])
        if tag == "details":
            nid = int(a["data-node"])
            self.nodes[nid] = {"classes": set(a.get("class", "").split()), "step": "",
                               "open": "open" in a, "parent": self._stack[-1] if self._stack
                               else None}
            self._stack.append(nid)
        elif tag == "script":
            self._in_script = True
            self.scripts.append("")
        elif tag == "span" and a.get("class") == "step":
            self._in_step = self._stack[-1]

    def handle_endtag(self, tag):
        if tag == "details":
            self._stack.pop()
        elif tag == "script":
            self._in_script = False
        elif tag == "span":
            self._in_step = None

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
        elif self._in_step is not None:
            self.nodes[self._in_step]["step"] += data


def parse(page):
    p = _Collect()
    p.feed(page)
    p.close()
    return p


def test_viewer_shows_every_node_with_its_text_and_structure():
    tree, ids = make_tree()
    page = render_tree_html(tree, decode=decode, chosen=ids["c"])
    p = parse(page)
    d = tree.to_dict()
    assert set(p.nodes) == {n["id"] for n in d["nodes"]}
    for n in d["nodes"]:
        # The text a reader sees is exactly the decoded step (after HTML unescaping).
        assert p.nodes[n["id"]]["step"] == decode(n["tokens"])
        # Nesting of <details> mirrors the tree's parent links.
        want_parent = None if n["parent"] < 0 else n["parent"]
        assert p.nodes[n["id"]]["parent"] == want_parent
    assert "visits 1 · value 1.000 · reward 1.000" in page  # node c's statistics


def test_chosen_path_is_highlighted_and_open():
    tree, ids = make_tree()
    p = parse(render_tree_html(tree, decode=decode, chosen=ids["c"], open_depth=0))
    chosen = {n for n, v in p.nodes.items() if "chosen" in v["classes"]}
    assert chosen == {0, ids["a"], ids["c"]}
    assert all(p.nodes[n]["open"] for n in chosen)
    assert not p.nodes[ids["b"]]["open"]  # off the chosen path, below open_depth
    assert "ok" in p.nodes[ids["c"]]["classes"]  # terminal, reward 1
    assert "terminal" in p.nodes[ids["d"]]["classes"]  # terminal, reward 0
    assert chosen_path(tree, ids["c"]) == [0, ids["a"], ids["c"]]
    assert chosen_path(tree, -1) == [] and chosen_path(tree, None) == []
    # An explicit set of nodes to highlight.
    p2 = parse(render_tree_html(tree, decode=decode, chosen=[ids["b"]]))
    assert {n for n, v in p2.nodes.items() if "chosen" in v["classes"]} == {ids["b"]}


def test_untrusted_text_is_escaped():
    tree, ids = make_tree()
    page = render_tree_html(tree, decode=decode, chosen=ids["c"],
                            title="<b>t</b>", meta={"<i>k</i>": "<img src=x onerror=alert(1)>"})
    p = parse(page)
    assert len(p.scripts) == 1  # only the viewer's own script element
    assert "pwned" not in p.scripts[0]
    assert "<script>document.title" not in page
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in page
    assert "a &amp; b &quot;q&quot; &#x27;x&#x27;" in page
    assert "<img" not in page and "<b>t</b>" not in page and "<i>k</i>" not in page
    assert p.nodes[ids["script"]]["step"] == VOCAB[14]  # shown verbatim, as text


def test_page_is_self_contained():
    tree, ids = make_tree()
    page = render_tree_html(tree, decode=decode, chosen=ids["c"])
    p = parse(page)
    assert p.urls == []  # no src/href at all: nothing to fetch
    assert not re.search(r"https?:|//[a-z]|@import|url\(", page, re.I)


def test_tree_dict_input_without_decoder_shows_token_ids_and_validates():
    tree, ids = make_tree()
    d = json.loads(json.dumps(tree.to_dict()))  # what a saved golden file looks like
    p = parse(render_tree_html(d, chosen=ids["d"]))
    assert p.nodes[ids["b"]]["step"] == "11"
    with pytest.raises(ValueError, match="not in the tree"):
        render_tree_html(d, chosen=99)
    with pytest.raises(TypeError, match="SearchTree"):
        render_tree_html([1, 2, 3])
    with pytest.raises(ValueError, match="lacks"):
        render_tree_html({"root": 0, "nodes": [{"id": 0}]})
    with pytest.raises(ValueError, match="no nodes"):
        render_tree_html({"root": 0, "nodes": []})
    bad = json.loads(json.dumps(d))
    bad["nodes"][ids["c"]]["parent"] = -1  # c no longer leads back to the root
    with pytest.raises(ValueError, match="root"):
        chosen_path(bad, ids["c"])


def test_deep_tree_renders_without_recursion_and_truncates():
    n = 3000  # deeper than Python's default recursion limit
    nodes = [{"id": i, "parent": i - 1, "depth": i, "tokens": [i % 7], "prior": 1.0,
              "visits": 1, "value": 0.5, "reward": 0.0, "terminal": i == n - 1,
              "children": [i + 1] if i < n - 1 else []} for i in range(n)]
    d = {"root": 0, "nodes": nodes}
    page = render_tree_html(d, chosen=n - 1)
    p = parse(page)
    assert len(p.nodes) == n and page.count("</details>") == n
    assert all("chosen" in v["classes"] for v in p.nodes.values())
    short = render_tree_html(d, max_nodes=10)
    assert len(parse(short).nodes) == 10 and "showing the first 10 of 3000 nodes" in short
    with pytest.raises(ValueError):
        render_tree_html(d, max_nodes=0)


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "headless_shell"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed")
def test_renders_in_headless_chromium(tmp_path):
    tree, ids = make_tree()
    f = write_tree_html(tmp_path / "t.html", tree, decode=decode, chosen=ids["c"])
    try:
        out = subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", f.as_uri()],
            capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("headless Chromium did not finish in 60 s")
    dom = out.stdout
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'data-viewer="ready"' in dom  # the viewer's script ran to its end
    assert "pwned" not in re.search(r"<title>(.*?)</title>", dom, re.S).group(1)
    p = parse(dom)
    assert {n for n, v in p.nodes.items() if "chosen" in v["classes"]} == {0, ids["a"], ids["c"]}
    assert p.nodes[ids["script"]]["step"] == VOCAB[14]


def _png_ok(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    return img


def test_accuracy_vs_tokens_plot(tmp_path):
    f = plot_accuracy_vs_tokens(
        {"best_of_n": [(256, 0.5), (64, 0.3), (128, 0.4)], "mcts": ([60, 130], [0.35, 0.45]),
         "greedy": [(30, 0.34)]}, tmp_path / "sub" / "acc.png", baselines={"greedy": 0.34})
    img = _png_ok(f)
    assert np.asarray(img).std() > 0  # not a blank canvas
    with pytest.raises(ValueError, match="no curves"):
        plot_accuracy_vs_tokens({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="empty"):
        plot_accuracy_vs_tokens({"a": []}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="non-finite"):
        plot_accuracy_vs_tokens({"a": [(1, float("nan"))]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="pairs"):
        plot_accuracy_vs_tokens({"a": ([1, 2], [0.1])}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_learning_curves_plot(tmp_path):
    f = plot_learning_curves({"loss": [1.0, 0.7, 0.5, 0.45]}, tmp_path / "lc.png",
                             secondary={"acc": [(0, 0.3), (3, 0.4)]}, secondary_label="acc")
    _png_ok(f)
    with pytest.raises(ValueError):
        plot_learning_curves({}, tmp_path / "y.png")
    with pytest.raises(ValueError):
        plot_learning_curves({"loss": ["a", "b"]}, tmp_path / "y.png")


def test_accuracy_plot_axes_read_plainly():
    """Read back from the figure: plain tick labels on the log axis (30, 50, 100 - not
    3x10^1), a y-range fitted to the data, and the nominal budget beside each point."""
    from o1search.viz.plots import accuracy_vs_tokens_figure

    fig = accuracy_vs_tokens_figure(
        {"best_of_n": [(31, 0.40), (62, 0.45), (124, 0.52)], "greedy": [(28, 0.38)]},
        budgets={"best_of_n": [32, 64, 128]})
    try:
        ax = fig.axes[0]
        fig.canvas.draw()
        lo, hi = ax.get_xlim()
        labels = [t.get_text() for t, v in zip(ax.get_xticklabels(), ax.get_xticks())
                  if lo <= v <= hi]
        assert labels and all(lab.replace(".", "").isdigit() for lab in labels), labels
        assert "50" in labels and "100" in labels
        assert not any(t.get_text() for t in ax.get_xticklabels(minor=True))
        y0, y1 = ax.get_ylim()
        assert 0.3 < y0 < 0.38 and 0.52 < y1 < 0.6  # shows the differences
        notes = [t.get_text() for t in ax.texts]
        assert notes == ["B=32", "B=64", "B=128"]
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_loss_and_rounds_are_two_panels_with_a_smoothed_loss():
    """The demo's learning plot: optimizer steps and ReST rounds on separate x-axes, the raw
    loss beside a smoothed one (read back from the figure)."""
    import random as _random

    from o1search.viz.plots import loss_and_rounds_figure, smooth

    rng = _random.Random(0)
    losses = [1.0 / (1 + i / 50) + rng.uniform(-0.2, 0.2) for i in range(400)]
    fig = loss_and_rounds_figure(losses, {"greedy accuracy": [(0, 0.375), (1, 0.435)]})
    try:
        ax1, ax2 = fig.axes
        raw, sm = ax1.get_lines()
        assert list(raw.get_ydata()) == losses
        assert np.std(np.diff(sm.get_ydata())) < 0.2 * np.std(np.diff(raw.get_ydata()))
        assert ax1.get_xlim()[1] >= 399 and ax2.get_xlim()[1] < 2  # separate x-axes
        (acc,) = ax2.get_lines()
        assert list(acc.get_xdata()) == [0, 1] and list(acc.get_ydata()) == [0.375, 0.435]
        fig.canvas.draw()
        assert all(float(t.get_text().replace("\u2212", "-")).is_integer()
                   for t in ax2.get_xticklabels()
                   if t.get_text())
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    assert smooth([1.0, 3.0, 1.0, 3.0], window=3) == [2.0, 5 / 3, 7 / 3, 2.0]
    with pytest.raises(ValueError, match="finite"):
        loss_and_rounds_figure([], {"a": [(0, 1.0)]})


def test_viewer_marks_the_false_step_and_draws_visits_as_bars():
    from o1search.experiments.search_run import false_step_of
    from o1search.viz import render_tree_html

    t = SearchTree([1, 2])
    a, b = (int(x) for x in t.add_children(0, [[5], [6]], [0.5, 0.5]))
    (c,) = (int(x) for x in t.add_children(a, [[7]], [1.0]))
    t.backup([c], [0.0])
    t.backup([b], [1.0])
    t.backup([b], [1.0])
    names = {5: "3+4=7", 6: "2*3=6", 7: "12+56=89"}
    reason = "wrong step 12+56=89 is not corrected"
    assert false_step_of(reason) == "12+56=89"
    assert false_step_of("step 2 (12+56) must be one operation a op b") == "12+56"
    assert false_step_of("reaches the target with valid steps") is None
    page = render_tree_html(t, decode=lambda ids: " ".join(names.get(i, str(i)) for i in ids),
                            chosen=c, mark=false_step_of(reason), meta={"verifier says": reason})
    marked = re.findall(r'<details class="([^"]*)" data-node="(\d+)"', page)
    assert [int(n) for cls, n in marked if "false-step" in cls] == [c]  # only that node
    assert "verifier says" in page and "12+56=89 is not corrected" in page
    bars = dict(re.findall(r'data-node="(\d+)"[^>]*><summary[^>]*><span class="bar" '
                           r'style="width:(\d+)px', page))
    assert int(bars[str(b)]) > int(bars[str(c)])  # visited twice vs once: a wider bar
    assert "hsl(120," in page and "hsl(0," in page  # value 1 green, value 0 red
