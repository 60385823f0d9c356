"""``o1search search``: one search algorithm on problems of a task, and the one-method runner
the demo's comparison shares."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from o1search.experiments.options import check_budget
from o1search.experiments.options import help_field as _f
from o1search.experiments.presets import ALGORITHMS, make_algorithm
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
                   final_prefix: str | None = "answer", temperature: float = 1.0
                   ) -> dict[str, Any]:
    """One method at one budget on ``problems``: results, accuracy, tokens, seconds."""
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
                             encode=lambda t: encode_prompt(tokenizer, t))
    gen = EngineGenerator(engine, tokenizer, step_delimiter="\n", final_prefix=final_prefix)
    algo = make_algorithm(name, budget, max_new_tokens=max_new_tokens, has_prm=has_prm,
                          temperature=temperature)
    engine.flush_cache()  # every method starts cold: wall times compare fairly
    t0 = time.perf_counter()
    search = Search(algo, sps, gen, None if name == "greedy" else evaluator, decoder=decode,
                    answer_fn=task_answer_fn(task, decode))
    results = run_rounds(search, f"{name} @ {budget}" if budget else name, progress)
    seconds = time.perf_counter() - t0
    correct = [float(task.verify(p, r.text or "")) >= 1.0 for p, r in zip(problems, results)]
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
    }


@dataclasses.dataclass
class SearchRunConfig:
    """``o1search search``: one algorithm on problems of a task.

    Raises (``__post_init__``):
        ValueError: an unknown algorithm, a budget too small, counts below 1.
    """

    task: str = _f("countdown", "a built-in task name or the path of a .jsonl file")
    algo: str = _f("mcts", f"one of {', '.join(ALGORITHMS)}")
    budget: int | None = _f(256, "generated tokens per problem (None: no cap)")
    problems: int = _f(8, "problems to solve (from the start of the split)")
    split: str = _f("test", "'train' or 'test'")
    model: str | None = _f(None, "policy checkpoint directory (None: the shipped policy)")
    prm: str | None = _f(None, "PRM checkpoint (e.g. <demo out>/prm); None: the task's "
                               "verifier is the evaluator (an oracle: fine for finding "
                               "training data, not an honest test score)")
    question_field: str = _f("question", "JSONL field of the question")
    answer_field: str = _f("answer", "JSONL field of the answer")
    final_prefix: str | None = _f("answer", "a step starting with this ends a path")
    max_new_tokens: int = _f(96, "longest completion")
    tree_html: str | None = _f(None, "write the first problem's tree viewer here")
    seed: int = _f(0, "seed")
    progress: bool = _f(True, "progress bar")

    def __post_init__(self) -> None:
        if self.algo not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {self.algo!r}; use one of "
                             f"{', '.join(ALGORITHMS)}")
        if self.problems < 1:
            raise ValueError(f"problems must be >= 1, got {self.problems}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {self.split!r}")
        if self.budget is not None:
            check_budget(self.budget, "--budget")
        if self.budget is not None and self.algo != "greedy":
            make_algorithm(self.algo, self.budget)  # raises a clear error when too small


def run_search(config: SearchRunConfig) -> dict[str, Any]:
    """Run one search algorithm on problems of a task (``o1search search``).

    Parameters:
        config: a :class:`SearchRunConfig`.

    Returns:
        ``{"config", "problems": [{"id", "question", "answer", "reference", "correct",
        "generated_tokens", "text"}], "summary": {"accuracy", "mean_generated_tokens",
        "seconds"}, "tree_html"}``.

    Raises:
        FileNotFoundError: a missing model, PRM or task file.
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
    from o1search.policy import default_policy_path, load_policy
    from o1search.search import VerifierEvaluator, make_decoder

    policy_dir = Path(config.model) if config.model else default_policy_path()
    # The task first: a bad data file is reported before the model is loaded.
    task = load_task(config.task, policy_dir, question_field=config.question_field,
                      answer_field=config.answer_field)
    model, tok = load_policy(config.model)
    problems = task.problems(config.split)[: config.problems]
    if not problems:
        raise ValueError(f"task {config.task!r} has no {config.split} problems")
    warn_unrepresentable(tok, task, problems)
    if config.prm is not None:
        from o1search.reward import ProcessRewardModel

        evaluator: Any = ProcessRewardModel.load(config.prm)
    else:
        # Partial paths get a neutral 0.5: the verifier only judges finished answers.
        evaluator = VerifierEvaluator(task, make_decoder(tok), partial_value=0.5)
    engine = Engine(model, tok, num_pages=8192, page_size=16, max_batch_tokens=4096)
    with torch.no_grad():
        row = search_method(config.algo, None if config.algo == "greedy" else config.budget,
                             problems, task, engine, tok, evaluator, seed=config.seed,
                             max_new_tokens=config.max_new_tokens, progress=config.progress,
                             has_prm=config.prm is not None, final_prefix=config.final_prefix)
    out_problems = []
    for p, r, ok in zip(problems, row["results"], row["correct"]):
        out_problems.append({"id": p.id, "question": p.question, "reference": p.answer,
                             "answer": r.answer, "correct": ok, "text": r.text,
                             "generated_tokens": r.compute.generated_tokens})
    tree_file = None
    if config.tree_html:
        from o1search.viz import write_tree_html

        r0 = row["results"][0]
        tree_file = str(write_tree_html(
            config.tree_html, r0.tree, decode=make_decoder(tok), chosen=r0.node,
            title=f"o1search {config.algo} tree: {problems[0].id}",
            meta={"question": problems[0].question, "answer": r0.answer,
                  "correct": row["correct"][0], "algorithm": config.algo}))
    return {
        "config": dataclasses.asdict(config),
        "problems": out_problems,
        "summary": {"accuracy": row["accuracy"],
                    "mean_generated_tokens": row["mean_generated_tokens"],
                    "seconds": round(row["seconds"], 2),
                    "evaluator": "prm" if config.prm else "verifier (oracle)"},
        "tree_html": tree_file,
    }
