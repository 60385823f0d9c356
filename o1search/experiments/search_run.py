"""``o1search search``: one search algorithm on problems of a task, and the one-method runner
the demo's comparison shares."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from o1search.experiments.options import check_budget
from o1search.experiments.options import help_field as _f
from o1search.experiments.presets import ALGORITHMS, COMPLETION_TOKENS, make_algorithm
from o1search.experiments.task_setup import load_task, warn_unrepresentable

__all__ = ["SearchRunConfig", "run_rounds", "run_search", "search_method"]


def run_rounds(search: Any, desc: str, progress: bool) -> list[Any]:
    """``search.run()`` with a progress bar over rounds."""
    from tqdm.auto import tqdm

    with tqdm(desc=desc, unit="round", disable=not progress, leave=False) as bar:
        while not search.done:
            search.step()
            bar.update(1)
    return search.results()


def search_method(name: str, budget: int | None, problems: Sequence[Any], task: Any,
                  engine: Any, tokenizer: Any, evaluator: Any, *, seed: int,
                  max_new_tokens: int, progress: bool, has_prm: bool,
                  final_prefix: str | None = "answer", temperature: float = 1.0,
                  top_p: float = 1.0, top_k: int = 0,
                  step_delimiter: str = "\n", final_markers: Sequence[str] = (),
                  completion_tokens: int | None = None, has_evaluator: bool | None = None,
                  system_prompt: str | None = None, hard_budget: bool = False,
                  overrides: dict[str, Any] | None = None, preset: str = "cli"
                  ) -> dict[str, Any]:
    """One method at one budget on ``problems``: results, accuracy, tokens, seconds
    (``hard_budget``: no problem generates past ``budget``)."""
    from o1search.policy import encode_prompt
    from o1search.search import (
        EngineGenerator,
        Search,
        make_decoder,
        problems_from_task,
        task_answer_fn,
    )

    decode = make_decoder(tokenizer)
    sps = problems_from_task(task, problems, tokenizer, seed=seed,
                             encode=lambda t: encode_prompt(tokenizer, t,
                                                            system_prompt=system_prompt))
    gen = EngineGenerator(engine, tokenizer, step_delimiter=step_delimiter,
                          final_prefix=final_prefix, final_markers=final_markers)
    sizing = {} if completion_tokens is None else {"completion_tokens": completion_tokens}
    if preset == "benchmark" and name != "greedy":
        # The configuration benchmarks/bench_search.py measured: method_config, with the
        # exact-verifier MCTS when the verifier guides and PRM step values when a PRM does.
        from o1search.experiments.presets import algorithm_for, method_config
        from o1search.search import SamplingConfig

        cfg = method_config(
            name, budget, completion_tokens=float(completion_tokens or COMPLETION_TOKENS),
            has_evaluator=True if has_evaluator is None else has_evaluator,
            sampling=SamplingConfig(temperature=temperature, top_p=top_p, top_k=top_k),
            max_completion_tokens=max_new_tokens,
            **({"value_source": "evaluator"} if name == "mcts" and has_prm else
               {"exact_verifier": True} if name == "mcts" else {}))
        algo = algorithm_for(cfg)
    else:
        algo = make_algorithm(name, budget, max_new_tokens=max_new_tokens, has_prm=has_prm,
                              has_evaluator=has_evaluator, temperature=temperature, top_p=top_p,
                              top_k=top_k, **sizing)
    changes = dict(overrides or {})
    if hard_budget and getattr(algo.config, "token_budget", None) is not None:
        changes["hard_budget"] = True
    if changes:
        import dataclasses

        algo = type(algo)(dataclasses.replace(algo.config, **changes))
    engine.flush_cache()  # every method starts cold: wall times compare fairly
    t0 = time.perf_counter()
    search = Search(algo, sps, gen, None if name == "greedy" else evaluator, decoder=decode,
                    answer_fn=task_answer_fn(task, decode))
    results = run_rounds(search, f"{name} @ {budget}" if budget else name, progress)
    seconds = time.perf_counter() - t0
    judge = getattr(task, "evaluate", None)
    if callable(judge):  # the verdict with its reason (why a FAIL failed)
        verdicts = [judge(p, r.text or "") for p, r in zip(problems, results)]
        correct = [float(v.reward) >= 1.0 for v in verdicts]
        reasons = [str(v.reason) for v in verdicts]
    else:
        correct = [float(task.verify(p, r.text or "")) >= 1.0 for p, r in zip(problems, results)]
        reasons = ["" for _ in results]
    tokens = [r.compute.generated_tokens for r in results]
    return {
        "method": name,
        "budget": budget,
        "problems": len(problems),
        "accuracy": sum(correct) / len(correct),
        "mean_generated_tokens": sum(tokens) / len(tokens),
        "max_generated_tokens": max(tokens),
        "seconds": seconds,
        "results": results,
        "correct": correct,
        "reasons": reasons,
        "algorithm_config": _config_dict(algo.config),
    }


_FALSE_STEP = re.compile(r"wrong step (\S+)|step \d+ \(([^)]*)\)")


def false_step_of(reason: str | None) -> str | None:
    """The step a verifier's reason names as false (``"wrong step 12+56=89 is not
    corrected"`` -> ``"12+56=89"``), for the tree viewer to mark; None when it names none."""
    m = _FALSE_STEP.search(reason or "")
    return None if m is None else (m.group(1) or m.group(2))


def _config_dict(cfg: Any) -> dict[str, Any] | None:
    """The algorithm's config as JSON-able data (None for greedy's)."""
    if not dataclasses.is_dataclass(cfg):
        return None
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


#: ``--dtype`` names and the torch dtypes they load.
DTYPES = ("float32", "bfloat16", "float16")

#: Per-method size options: SearchRunConfig field -> (algorithm config field, methods).
SIZE_OPTIONS = {
    "num_samples": ("n", ("best_of_n",)),
    "beam_width": ("width", ("beam", "dvts")),
    "num_simulations": ("num_simulations", ("mcts",)),
    "num_children": ("num_children", ("mcts",)),
}

#: How a chat model's steps are cut: at a blank line.
CHAT_STEP_DELIMITER = "\n\n"


@dataclasses.dataclass
class SearchRunConfig:
    """``o1search search``: one algorithm on problems of a task.

    Raises (``__post_init__``):
        ValueError: an unknown algorithm or dtype, a budget too small, counts below 1.
    """

    task: str = _f("countdown", "a built-in task name or the path of a .jsonl file")
    algo: str = _f("mcts", f"one of {', '.join(ALGORITHMS)}")
    budget: int | None = _f(256, "generated tokens per problem (None: no cap)")
    hard_budget: bool = _f(False, "never generate past the budget (the last requests are "
                                  "shortened; default: a round started under it runs whole)")
    problems: int | None = _f(None, "problems to solve: the first N (None: all of a task "
                                     "file, 8 of a built-in task)")
    split: str | None = _f(None, "'train' or 'test' (None: a task file whole, in file order; "
                                 "a built-in task's test split)")
    model: str | None = _f(None, "policy checkpoint directory (None: the shipped policy)")
    prm: str | None = _f(None, "PRM checkpoint (e.g. <demo out>/prm); None: the task's "
                               "verifier is the evaluator (an oracle: fine for finding "
                               "training data, not an honest test score)")
    question_field: str = _f("question", "JSONL field of the question")
    answer_field: str = _f("answer", "JSONL field of the answer")
    final_prefix: str | None = _f("answer", "a step starting with this ends a path (models "
                                            "without a chat template)")
    max_new_tokens: int | None = _f(None, "longest completion (None: 96, or 384 for a chat "
                                          "model)")
    step_delimiter: str | None = _f(None, "text that ends a step (None: a newline, or a "
                                          "blank line for a chat model)")
    system_prompt: str | None = _f(None, "chat models: the system turn (None: the template's)")
    out: str | None = _f(None, "write one JSON line per problem here, as problems finish")
    overwrite: bool = _f(False, "replace an existing --out file")
    batch: int = _f(8, "problems searched together (results are written after each batch)")
    dtype: str = _f("float32", f"weights and KV dtype: {', '.join(DTYPES)}")
    num_pages: int | None = _f(None, "KV pages (None: sized from --kv-memory)")
    kv_memory: int | None = _f(None, "bytes the KV pool may take (None: 25% of the available "
                                     "memory, at most 4 GiB, and no more than the run holds)")
    threads: int | None = _f(None, "torch CPU threads (None: half the CPUs, at least 1)")
    tree_html: str | None = _f(None, "write a problem's tree viewer here (--tree-problem)")
    tree_problem: str | None = _f(None, "which problem's tree --tree-html shows: its id or its "
                                        "position (0-based) in the run (None: the first)")
    temperature: float = _f(1.0, "sampling temperature of the sampling methods")
    top_p: float = _f(1.0, "nucleus sampling: keep the smallest set of tokens with this mass")
    top_k: int = _f(0, "sample among the k most likely tokens (0: all)")
    seed: int = _f(0, "seed")
    progress: bool = _f(True, "progress bar")
    num_samples: int | None = _f(None, "best_of_n: completions per problem (None: sized from "
                                       "the budget)")
    beam_width: int | None = _f(None, "beam, dvts: beams kept per step (None: the preset)")
    num_simulations: int | None = _f(None, "mcts: leaf expansions per problem at most "
                                           "(None: sized from the budget)")
    num_children: int | None = _f(None, "mcts: steps sampled per expansion (None: the preset)")
    preset: str = _f("benchmark", "'benchmark': the configuration benchmarks/bench_search.py "
                                  "measured (exact-verifier MCTS with widening when the "
                                  "verifier guides); 'cli': the older sizing from the budget")

    def size_overrides(self) -> dict[str, int]:
        """The algorithm-config fields the per-method size options set."""
        return {SIZE_OPTIONS[k][0]: getattr(self, k) for k in SIZE_OPTIONS
                if getattr(self, k) is not None}

    def __post_init__(self) -> None:
        from o1search.search import SamplingConfig

        if self.preset not in ("cli", "benchmark"):
            raise ValueError(f"preset must be 'cli' or 'benchmark', got {self.preset!r}")
        for k, (_, methods) in SIZE_OPTIONS.items():
            v = getattr(self, k)
            if v is None:
                continue
            flag = "--" + k.replace("_", "-")
            if self.algo not in methods:
                raise ValueError(f"{flag} applies to {' and '.join(methods)}, not to "
                                 f"--algo {self.algo}")
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{flag} must be an integer >= 1, got {v!r}")

        SamplingConfig(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        if self.algo not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {self.algo!r}; use one of "
                             f"{', '.join(ALGORITHMS)}")
        if self.problems is not None and self.problems < 1:
            raise ValueError(f"problems must be >= 1, got {self.problems}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        if self.split not in (None, "train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {self.split!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.step_delimiter == "":
            raise ValueError("step_delimiter must not be empty")
        if self.budget is not None:
            check_budget(self.budget, "--budget")
        if self.budget is not None and self.algo != "greedy":
            make_algorithm(self.algo, self.budget)  # raises a clear error when too small


def _select_problems(task: Any, config: SearchRunConfig) -> list[Any]:
    """A task file whole, in file order, unless a split is asked for; the first N."""
    every = getattr(task, "all_problems", None)
    if config.split is None and callable(every):
        problems, what = list(every()), "problems"
    else:
        split = config.split or "test"
        problems, what = list(task.problems(split)), f"{split} problems"
    if not problems:
        raise ValueError(f"task {config.task!r} has no {what}")
    n = config.problems if config.problems is not None else (
        len(problems) if callable(every) else 8)
    return problems[:n]


def _open_results(config: SearchRunConfig) -> Any:
    """The ``--out`` file, opened before any work (an existing file needs --overwrite)."""
    from o1search.outputs import OutputPathError, check_output_file

    path = check_output_file(config.out, what="--out")
    if path.exists() and not config.overwrite:
        raise OutputPathError(f"--out {config.out!r} exists; choose a new file (or pass "
                              "--overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "w", encoding="utf-8")


def run_search(config: SearchRunConfig, *, echo: Callable[[str], None] | None = None
               ) -> dict[str, Any]:
    """Run one search algorithm on problems of a task (``o1search search``).

    Problems are searched ``config.batch`` at a time; after each batch one JSON line per
    problem is appended to ``config.out`` (flushed and fsync'ed: a crash loses nothing
    already written).

    Parameters:
        config: a :class:`SearchRunConfig`.
        echo: where the one line of resources and evaluator goes (None: silent).

    Returns:
        ``{"config", "problems": [{"id", "question", "answer", "reference", "correct",
        "generated_tokens", "text"}], "summary": {"accuracy", "mean_generated_tokens",
        "seconds", "evaluator", "problems"}, "resources", "tree_html", "out"}``.

    Raises:
        FileNotFoundError: a missing model, PRM or task file.
        OutputPathError: an ``out`` or ``tree_html`` that may not be written.
        ValueError: a bad task file (the message names the field), an empty split, bad
            sizes.
    """
    # Paths first, before the heavy imports: a typo is reported at once.
    if config.model is not None and not Path(config.model).exists():
        raise FileNotFoundError(f"no policy checkpoint at {config.model!r}")
    if config.prm is not None and not Path(config.prm).exists():
        raise FileNotFoundError(f"no PRM checkpoint at {config.prm!r}")
    if config.tree_html:
        from o1search.outputs import check_output_file

        check_output_file(config.tree_html, what="--tree-html")
    import torch

    from o1search.engine import Engine
    from o1search.experiments.resources import plan_resources
    from o1search.policy import default_policy_path, encode_prompt, load_policy
    from o1search.search import VerifierEvaluator, make_decoder
    from o1search.search.adapters import CHAT_FINAL_MARKERS

    say = echo or (lambda s: None)
    policy_dir = Path(config.model) if config.model else default_policy_path()
    # The task first: a bad data file is reported before the model is loaded.
    task = load_task(config.task, policy_dir, question_field=config.question_field,
                     answer_field=config.answer_field)
    problems = _select_problems(task, config)
    if config.tree_html and config.tree_problem is not None and config.tree_problem not in (
            {str(p.id) for p in problems} | {str(i) for i in range(len(problems))}):
        raise ValueError(f"--tree-problem {config.tree_problem!r} is neither the id nor the "
                         f"position of a problem of this run ({len(problems)} problems, first "
                         f"id {problems[0].id!r})")
    sink = _open_results(config) if config.out else None
    try:
        dtype = getattr(torch, config.dtype)
        model, tok = load_policy(config.model, dtype=dtype)
        warn_unrepresentable(tok, task, problems)
        chat = bool(getattr(tok, "chat_template", None))
        if chat and getattr(task, "check_steps", False):
            # A chat model writes words, not the character policy's column trace: judge the
            # answer it states (the task's chat prompt asks for "The answer is N").
            task.check_steps = False
        if chat and hasattr(task, "expression_answers"):
            task.expression_answers = True  # Countdown: the stated expression is judged
        max_new = config.max_new_tokens or (384 if chat else 96)
        delimiter = config.step_delimiter or (CHAT_STEP_DELIMITER if chat else "\n")
        completion = max(32, max_new // 2) if chat else None
        if config.prm is not None:
            from o1search.reward import ProcessRewardModel

            evaluator: Any = ProcessRewardModel.load(config.prm)
            what = f"PRM {config.prm}"
        else:
            # Partial paths get a neutral 0.5: the verifier only judges finished answers.
            evaluator = VerifierEvaluator(task, make_decoder(tok), partial_value=0.5)
            what = "the task's verifier (an oracle: not an honest test score)"
        longest = max(len(encode_prompt(tok, task.prompt(p), system_prompt=config.system_prompt))
                      for p in problems)
        per = (completion or 32)
        samples = 8 if config.budget is None else max(2, config.budget // per)
        need = min(config.batch, len(problems)) * (longest + (samples + 2) * max_new)
        plan = plan_resources(model.config, dtype_bytes=torch.empty((), dtype=dtype).element_size(),
                              need_tokens=need, num_pages=config.num_pages,
                              kv_memory=config.kv_memory, threads=config.threads)
        torch.set_num_threads(plan.threads)
        picks = ("greedy: one completion, judged by the task" if config.algo == "greedy"
                 else f"{config.algo} is guided and its answer picked by {what}")
        say(f"o1search: {plan.describe()}; {picks}")
        engine = Engine(model, tok, num_pages=plan.num_pages, page_size=plan.page_size,
                        max_batch_tokens=4096)
        budget = None if config.algo == "greedy" else config.budget
        rows: list[dict[str, Any]] = []
        out_problems: list[dict[str, Any]] = []
        first_result = None
        seconds = 0.0
        for lo in range(0, len(problems), config.batch):
            chunk = problems[lo: lo + config.batch]
            with torch.no_grad():
                row = search_method(
                    config.algo, budget, chunk, task, engine, tok, evaluator,
                    seed=config.seed, max_new_tokens=max_new, progress=config.progress,
                    has_prm=config.prm is not None, has_evaluator=True,
                    final_prefix=None if chat else config.final_prefix,
                    final_markers=CHAT_FINAL_MARKERS if chat else (),
                    step_delimiter=delimiter, completion_tokens=completion,
                    system_prompt=config.system_prompt, temperature=config.temperature,
                    top_p=config.top_p, top_k=config.top_k, hard_budget=config.hard_budget,
                    overrides=config.size_overrides(), preset=config.preset)
            seconds += row["seconds"]
            for j, p in enumerate(chunk):
                if first_result is None and (
                        (config.tree_problem is None and lo + j == 0)
                        or config.tree_problem in (str(p.id), str(lo + j))):
                    first_result = (row["results"][j], row["correct"][j], row["reasons"][j], p)
            rows.append(row)
            for p, r, ok, why in zip(chunk, row["results"], row["correct"], row["reasons"]):
                line = {"id": p.id, "question": p.question, "reference": p.answer,
                        "answer": r.answer, "correct": ok, "reason": why, "text": r.text,
                        "generated_tokens": r.compute.generated_tokens}
                out_problems.append(line)
                if sink is not None:
                    sink.write(json.dumps(line, default=str) + "\n")
            if sink is not None:
                sink.flush()
                os.fsync(sink.fileno())
    finally:
        if sink is not None:
            sink.close()
    tree_file = None
    if config.tree_html and first_result is None:
        raise ValueError(f"--tree-problem {config.tree_problem!r} is neither the id nor the "
                         f"position of a problem of this run ({len(problems)} problems, first "
                         f"id {problems[0].id!r})")
    if config.tree_html and first_result is not None:
        from o1search.viz import write_tree_html

        r0, ok0, why0, p0 = first_result
        tree_file = str(write_tree_html(
            config.tree_html, r0.tree, decode=make_decoder(tok), chosen=r0.node,
            title=f"o1search {config.algo} tree: {p0.id}",
            meta={"problem": p0.id, "question": p0.question, "answer": r0.answer,
                  "correct": ok0, "verifier says": why0 or "-", "algorithm": config.algo},
            mark=None if ok0 else false_step_of(why0)))
    n = len(out_problems)
    return {
        "config": dataclasses.asdict(config),
        "problems": out_problems,
        "summary": {"accuracy": sum(p["correct"] for p in out_problems) / n,
                    "mean_generated_tokens": sum(p["generated_tokens"]
                                                 for p in out_problems) / n,
                    "seconds": round(seconds, 2), "problems": n,
                    "evaluator": "prm" if config.prm else "verifier (oracle)"},
        "resources": dataclasses.asdict(plan),
        "algorithm_config": rows[0]["algorithm_config"] if rows else None,
        "tree_html": tree_file,
        "out": config.out,
    }
