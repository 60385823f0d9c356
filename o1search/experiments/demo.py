"""The end-to-end demo (``o1search demo``).

The demo walks the roadmap on the built-in Countdown task, on CPU, with no downloads:

1. **policy** — the shipped default policy (or one trained from scratch by SFT);
2. **reward** — a process reward model (PRM) trained on Monte-Carlo step labels
   (Math-Shepherd style: roll-outs from every step prefix, verified by the task);
3. **search** — greedy, best-of-N, step beam search, MCTS and DVTS, all guided by the PRM,
   compared at equal token budgets (``token_budget`` per problem) on held-out problems;
4. **learning** — one ReST / expert-iteration round (search, keep verified solutions, SFT),
   with greedy accuracy before and after.

It writes ``report.json``, ``accuracy_vs_tokens.png``, ``learning_curves.png``,
``tree.html`` (one MCTS tree in the viewer) and the PRM checkpoint into ``config.out``.
The stages are functions of :mod:`o1search.experiments.demo_stages`; the outputs are written
by :mod:`o1search.experiments.demo_outputs`. Library code takes :class:`DemoConfig`; only
``o1search.cli`` parses arguments.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from o1search.experiments.demo_outputs import build_report, format_table, write_figures
from o1search.experiments.demo_stages import (
    compare_search,
    demo_policy,
    label_prm_data,
    rest_round,
    train_demo_prm,
)
from o1search.experiments.options import check_budget
from o1search.experiments.options import help_field as _f
from o1search.experiments.presets import ALGORITHMS, COMPLETION_TOKENS

__all__ = ["DemoConfig", "DemoResult", "run_demo"]


@dataclasses.dataclass
class DemoConfig:
    """What the demo runs. The defaults are the full demo (a few minutes on 2 CPU cores);
    :meth:`quick` gives the sub-2-minute version."""

    out: str = _f("./o1search_out", "output folder: created, or replaced as a whole when it "
                                    "holds an earlier run (a folder of other files is refused)")
    overwrite: bool = _f(False, "write into a folder of other files (they are kept)")
    policy: str | None = _f(None, "policy checkpoint directory (None: the shipped policy)")
    retrain_policy: bool = _f(False, "train the default policy from scratch by SFT instead of "
                                     "loading a checkpoint (saved to <out>/policy)")
    policy_steps: int = _f(1000, "SFT steps when retraining the policy")
    prm_problems: int = _f(400, "fresh problems whose sampled solutions label the PRM data")
    prm_samples: int = _f(8, "solutions sampled per PRM-training problem")
    prm_rollouts: int = _f(4, "Monte-Carlo roll-outs per step prefix")
    prm_epochs: float = _f(4.0, "PRM training epochs")
    eval_problems: int = _f(200, "held-out (test split) problems of the comparison")
    budgets: tuple[int, ...] = _f((64, 128, 256, 512), "token budgets per problem compared")
    methods: tuple[str, ...] = _f(ALGORITHMS, "search methods compared")
    rest_problems: int = _f(800, "training problems of the search + learn round")
    rest_samples: int = _f(8, "best-of-N samples per problem in the ReST round")
    rest_sft_steps: int = _f(40, "SFT steps of the ReST round")
    rest_lr: float = _f(3e-4, "peak learning rate of the ReST round's SFT (small: one round "
                              "on few examples overfits quickly)")
    rest_eval_problems: int = _f(200, "test problems of greedy accuracy before/after ReST")
    max_new_tokens: int = _f(96, "longest completion, in tokens")
    temperature: float = _f(0.7, "sampling temperature of the compared searches (the policy "
                                 "solves more at < 1; the PRM-data and ReST sampling use 1)")
    tree_method: str = _f("mcts", "which method's search tree goes into tree.html")
    seed: int = _f(0, "seed of everything")
    progress: bool = _f(True, "show progress bars (stderr)")
    threads: int | None = _f(1, "torch CPU threads (None: leave as is)")

    def __post_init__(self) -> None:
        self.budgets = tuple(int(b) for b in self.budgets)
        self.methods = tuple(self.methods)
        for name in ("policy_steps", "prm_problems", "prm_samples", "prm_rollouts",
                     "eval_problems", "rest_problems", "rest_samples", "rest_sft_steps",
                     "rest_eval_problems", "max_new_tokens"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"DemoConfig.{name} must be an int >= 1, got {v!r}")
        if not self.temperature > 0:
            raise ValueError(f"DemoConfig.temperature must be > 0, got {self.temperature}")
        if not self.rest_lr > 0:
            raise ValueError(f"DemoConfig.rest_lr must be > 0, got {self.rest_lr}")
        if not self.prm_epochs > 0:
            raise ValueError(f"DemoConfig.prm_epochs must be > 0, got {self.prm_epochs}")
        if not self.budgets:
            raise ValueError("DemoConfig.budgets is empty; give at least one token budget")
        check_budget(max(self.budgets))
        if min(self.budgets) < COMPLETION_TOKENS:
            raise ValueError(f"token budget {min(self.budgets)} is too small to finish one "
                             f"solution; use budgets >= {COMPLETION_TOKENS}")
        bad = [m for m in self.methods if m not in ALGORITHMS]
        if bad or not self.methods:
            raise ValueError(f"unknown method(s) {bad}; choose from {list(ALGORITHMS)}")
        if self.tree_method not in ALGORITHMS:
            raise ValueError(f"DemoConfig.tree_method must be one of {list(ALGORITHMS)}")
        if self.policy is not None and self.retrain_policy:
            raise ValueError("give a policy path or retrain_policy=True, not both")

    @classmethod
    def quick(cls, **overrides: Any) -> DemoConfig:
        """The quick demo (well under 2 minutes on 2 CPU cores): fewer problems, two budgets,
        a short PRM and ReST run. ``overrides`` replace any field."""
        fields = dict(prm_problems=96, prm_samples=8, prm_rollouts=2, prm_epochs=3.0,
                      eval_problems=64, budgets=(64, 128, 256), rest_problems=200,
                      rest_sft_steps=20, rest_eval_problems=200, policy_steps=300)
        fields.update(overrides)
        return cls(**fields)


@dataclasses.dataclass
class DemoResult:
    """What :func:`run_demo` produced.

    Attributes:
        report: the JSON report (also written to ``report.json``).
        table: the printed comparison table.
        files: ``{"report", "plot", "learning_plot", "tree_html", "prm"}`` paths.
    """

    report: dict[str, Any]
    table: str
    files: dict[str, Path]



def run_demo(config: DemoConfig, *, echo: Callable[[str], None] | None = print) -> DemoResult:
    """Run the whole demo (see the module docstring) and write its outputs.

    Parameters:
        config: a :class:`DemoConfig` (``DemoConfig.quick()`` for the short one).
        echo: where progress lines and the final table go (None: silent).

    Returns:
        A :class:`DemoResult`.

    Raises:
        FileNotFoundError: ``config.policy`` does not exist.
        ValueError: a bad configuration; a policy that is not a Countdown character policy.
        OSError: the output folder cannot be written.
    """
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from o1search.engine import Engine
    from o1search.outputs import atomic_output_dir, check_output_dir
    from o1search.policy import encode_prompt
    from o1search.search import (
        EngineGenerator,
        SearchProblem,
        derive_seed,
        make_decoder,
    )

    say = echo or (lambda s: None)
    t_start = time.perf_counter()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    out = check_output_dir(config.out, overwrite=config.overwrite, what="--out")  # before work
    timings: dict[str, float] = {}
    stages = ["policy", "PRM data", "PRM training", "search comparison", "search + learn",
              "outputs"]
    bar = tqdm(total=len(stages), desc="o1search demo", unit="stage", disable=not config.progress)

    def stage(name: str) -> float:
        bar.set_description_str(f"demo: {name}")
        return time.perf_counter()

    def done(name: str, t0: float) -> None:
        timings[name] = round(time.perf_counter() - t0, 2)
        bar.update(1)

    with atomic_output_dir(out, kind="demo-run", overwrite=config.overwrite) as work:
        # Everything is written into ``work``; it replaces ``out`` as a whole at the end, so
        # an interrupted run leaves the previous run untouched. Reports name final paths.
        def final(path: Any) -> Path:
            """Where ``path`` (written under ``work``) lies once the run is in place."""
            try:
                return out / Path(path).relative_to(work)
            except ValueError:
                return Path(path)

        # 1. Policy
        t0 = stage("policy")
        pol = demo_policy(config, work, bar)
        policy, tok, task = pol.model, pol.tokenizer, pol.task
        done("policy", t0)
        say(f"policy: {pol.source} ({pol.path}), "
            f"{sum(p.numel() for p in policy.parameters())} parameters")

        decode = make_decoder(tok)
        test = task.problems("test")
        eval_problems = test[: config.eval_problems]
        seen = task.problems("train") + test
        engine = Engine(policy, tok, num_pages=8192, page_size=16, max_batch_tokens=4096)
        gen = EngineGenerator(engine, tok, step_delimiter="\n")

        def as_search_problems(ps: Sequence[Any], seed: int) -> list[Any]:
            return [SearchProblem(tuple(encode_prompt(tok, task.prompt(p))), p,
                                  derive_seed(seed, p.id)) for p in ps]

        # 2. PRM data: sample solutions of fresh problems, label steps by roll-outs
        t0 = stage("PRM data")
        data = label_prm_data(config, task, gen, engine, tok, seen, as_search_problems)
        done("prm_data", t0)

        # 3. PRM training (initialised from the policy)
        t0 = stage("PRM training")
        prm, prm_res, prm_path = train_demo_prm(config, policy, tok, data, work)
        done("prm_training", t0)
        say(f"PRM: {len(data.traces)} sampled solutions "
            f"({np.mean([t.reward >= 0.5 for t in data.traces]):.0%} correct), "
            f"{data.soft.size} labelled steps, {prm_res.steps} steps, loss "
            f"{np.mean(prm_res.losses[:5]):.3f} -> {np.mean(prm_res.losses[-5:]):.3f}")

        # 4. Search comparison at equal token budgets
        t0 = stage("search comparison")
        rows, tree_row = compare_search(config, eval_problems, task, engine, tok, prm)
        done("search", t0)
        public_rows = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                        if k not in ("results", "correct", "reasons")} for r in rows]
        table = format_table(public_rows)
        say(f"\nsearch on {len(eval_problems)} held-out Countdown problems (PRM-guided, "
            f"token budget per problem):\n{table}")

        # 5. One search + learn round: ReST on verified search solutions
        t0 = stage("search + learn")
        rest = rest_round(config, policy, tok, task, test, seen, work)
        done("rest", t0)
        m = rest.metrics
        say(f"\nsearch + learn (one ReST round on {len(rest.train_problems)} fresh problems: "
            f"{int(m['search_solved'])} solved by search, {int(m['new_examples'])} "
            f"verified solutions, {int(m['sft_steps'])} SFT steps):\n"
            f"  greedy accuracy on {len(rest.eval_problems)} held-out problems: "
            f"{rest.accuracy_before:.3f} -> {rest.accuracy_after:.3f} "
            f"({rest.accuracy_after - rest.accuracy_before:+.3f})"
            + ("" if len(rest.eval_problems) == len(eval_problems) else
               f"\n  (a different set from the search table's {len(eval_problems)} problems, "
               "so its greedy baseline differs from the table's)"))

        # 6. Outputs
        t0 = stage("outputs")
        figures = write_figures(work, rows, tree_row, eval_problems, prm_res.losses, rest,
                                decode)
        files = {"report": work / "report.json", "plot": figures["plot"],
                 "learning_plot": figures["learning_plot"], "prm": prm_path,
                 "policy_after_rest": work / "policy_after_rest"}
        if config.retrain_policy:
            files["policy"] = pol.path
        if "tree_html" in figures:
            files["tree_html"] = figures["tree_html"]
        done("outputs", t0)
        bar.close()
        report = build_report(config, pol, data, prm_res, prm_path, public_rows, rest, files,
                              timings, round(time.perf_counter() - t_start, 2), final)
        files["report"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    say(f"\nwrote {out}/: report.json, accuracy_vs_tokens.png, learning_curves.png, tree.html, "
        f"prm/, policy_after_rest/  ({report['total_s']:.0f} s)")
    return DemoResult(report=report, table=table,
                      files={k: out / Path(v).relative_to(work) for k, v in files.items()})
