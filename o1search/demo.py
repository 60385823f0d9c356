"""The end-to-end demo (``o1search demo``) and the pipelines behind ``o1search search``.

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

Library code takes :class:`DemoConfig` / :class:`SearchRunConfig`; only ``o1search.cli``
parses arguments.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ALGORITHMS",
    "DemoConfig",
    "DemoResult",
    "SearchRunConfig",
    "TRAIN_ALGORITHMS",
    "TrainRunConfig",
    "format_table",
    "make_algorithm",
    "run_demo",
    "run_search",
    "run_train",
]

#: Search methods the demo and ``o1search search`` know, in table order.
ALGORITHMS = ("greedy", "best_of_n", "beam", "mcts", "dvts")

#: Countdown completions of the default policy are about this many tokens (characters);
#: budgets are turned into sample counts with it.
_COMPLETION_TOKENS = 32
_STEP_TOKENS = 10

_DEFAULT_KNOBS = {"num_count": 3, "n_train": 1600, "n_test": 200, "seed": 0,
                  "check_prob": 0.1, "correction_prob": 0.05}


#: The largest token budget per problem a run accepts: far beyond any search here, small
#: enough that sizing a run by it cannot exhaust memory.
MAX_TOKEN_BUDGET = 1_000_000


def _check_budget(budget: int, what: str = "token budget") -> None:
    if budget > MAX_TOKEN_BUDGET:
        raise ValueError(f"{what} {budget} is beyond the limit of {MAX_TOKEN_BUDGET:,} "
                         "generated tokens per problem")


def _f(default: Any, help_text: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help_text})


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
        _check_budget(max(self.budgets))
        if min(self.budgets) < _COMPLETION_TOKENS:
            raise ValueError(f"token budget {min(self.budgets)} is too small to finish one "
                             f"solution; use budgets >= {_COMPLETION_TOKENS}")
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


# ---------------------------------------------------------------------------------- search
def make_algorithm(name: str, budget: int | None, *, completion_tokens: int = _COMPLETION_TOKENS,
                   max_new_tokens: int = 96, temperature: float = 1.0,
                   has_prm: bool = True) -> Any:
    """A search algorithm sized for a token budget per problem.

    The budget is turned into about ``n = budget / completion_tokens`` whole solutions'
    worth of samples, and every method also gets ``token_budget=budget`` (a problem stops
    before a round that would start past it), so methods are compared at equal compute.

    Parameters:
        name: one of :data:`ALGORITHMS`.
        budget: generated tokens per problem (None: the sizes for ``n = 8`` and no cap;
            ignored by greedy).
        completion_tokens: typical solution length, to turn a budget into sample counts.
        max_new_tokens: longest completion.
        temperature: sampling temperature of the sampling methods.
        has_prm: whether the evaluator scores partial paths (a PRM); without one, MCTS takes
            its values from roll-outs scored by the outcome evaluator.

    Returns:
        An :class:`o1search.search.Algorithm`.

    Raises:
        ValueError: an unknown name, or a budget smaller than one solution.
    """
    from o1search.search import (
        MCTS,
        BeamConfig,
        BeamSearch,
        BestOfN,
        BestOfNConfig,
        DVTSConfig,
        MCTSConfig,
        SamplingConfig,
    )

    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; use one of {', '.join(ALGORITHMS)}")
    if name == "greedy":
        return BestOfN(BestOfNConfig(n=1, select="majority", max_completion_tokens=max_new_tokens,
                                     sampling=SamplingConfig(temperature=0.0)))
    if budget is not None and budget < completion_tokens:
        raise ValueError(f"budget {budget} tokens is too small for {name}: one solution takes "
                         f"about {completion_tokens}; use a budget >= {completion_tokens}")
    n = 8 if budget is None else max(2, budget // completion_tokens)
    sc = SamplingConfig(temperature=temperature)
    step = max(_STEP_TOKENS * 3, 16)  # a step never needs more; the cap bounds a runaway one
    if name == "best_of_n":
        return BestOfN(BestOfNConfig(n=n, select="best" if has_prm else "majority",
                                     max_completion_tokens=max_new_tokens, token_budget=budget,
                                     sampling=sc))
    if name == "beam":
        return BeamSearch(BeamConfig(width=max(1, n // 2), expansions_per_beam=2,
                                     token_budget=budget, sampling=sc, max_step_tokens=step,
                                     max_depth=12))
    if name == "dvts":
        return BeamSearch(DVTSConfig(width=1, num_subtrees=max(2, n // 2), expansions_per_beam=2,
                                     token_budget=budget, sampling=sc, max_step_tokens=step,
                                     max_depth=12))
    # MCTS: a simulation samples num_children steps (~_STEP_TOKENS each); a solution has
    # ~completion/step steps, so 2n simulations of 2 children spend about n solutions.
    sims = max(4, 2 * n * completion_tokens // (2 * _STEP_TOKENS))
    return MCTS(MCTSConfig(num_simulations=sims, leaves_per_round=4, num_children=2,
                           value_source="evaluator" if has_prm else "rollout",
                           max_completion_tokens=max_new_tokens, token_budget=budget,
                           sampling=sc, max_step_tokens=step, max_depth=12))


def _run_rounds(search: Any, desc: str, progress: bool) -> list[Any]:
    """``search.run()`` with a progress bar over rounds."""
    from tqdm.auto import tqdm

    with tqdm(desc=desc, unit="round", disable=not progress, leave=False) as bar:
        while not search.done:
            search.step()
            bar.update(1)
    return search.results()


def _search_method(name: str, budget: int | None, problems: Sequence[Any], task: Any,
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
    search = Search(algo, sps, gen, None if name == "greedy" else evaluator, decoder=decode, answer_fn=task_answer_fn(task, decode))
    results = _run_rounds(search, f"{name} @ {budget}" if budget else name, progress)
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
            _check_budget(self.budget, "--budget")
        if self.budget is not None and self.algo != "greedy":
            make_algorithm(self.algo, self.budget)  # raises a clear error when too small


def _load_task(spec: str, policy_dir: Path | None, *, question_field: str = "question",
               answer_field: str = "answer") -> Any:
    """The task: the policy's own Countdown knobs for ``countdown`` (so its test split is
    the one the policy never saw), a JSONL file with the given field names, or a name."""
    from o1search.tasks import get_task

    if spec == "countdown":
        return get_task("countdown", **_task_knobs(policy_dir))
    if spec.endswith(".jsonl") or os.path.isfile(spec):
        return get_task(spec, question_field=question_field, answer_field=answer_field)
    return get_task(spec)


def _warn_unrepresentable(tok: Any, task: Any, problems: Sequence[Any]) -> None:
    """One stderr line when prompts hold characters the tokenizer turns into <unk>: the
    policy would read something other than the user's text, silently."""
    from o1search.policy.model import unrepresentable_chars

    bad = unrepresentable_chars(tok, [task.prompt(p) for p in problems])
    if bad:
        shown = "".join(bad[:20]) + ("..." if len(bad) > 20 else "")
        print(f"o1search: warning: {len(bad)} characters of the prompts are not in the "
              f"policy's vocabulary and become {tok.unk_token!r}: {shown!r}; use a policy "
              "whose tokenizer covers this text (--model)", file=sys.stderr)


def _task_knobs(policy_dir: Path | None) -> dict[str, Any]:
    knobs = dict(_DEFAULT_KNOBS)
    if policy_dir is not None:
        report = Path(policy_dir) / "training_report.json"
        if report.is_file():
            try:
                knobs.update(json.loads(report.read_text())["task"]["knobs"])
            except (ValueError, KeyError, TypeError):
                pass  # an unreadable report: the defaults are the shipped task's
    return knobs


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
        from o1search.checkpoint import check_output_file

        check_output_file(config.tree_html, what="--tree-html")
    import torch

    from o1search.engine import Engine
    from o1search.policy import default_policy_path, load_policy
    from o1search.search import VerifierEvaluator, make_decoder

    policy_dir = Path(config.model) if config.model else default_policy_path()
    # The task first: a bad data file is reported before the model is loaded.
    task = _load_task(config.task, policy_dir, question_field=config.question_field,
                      answer_field=config.answer_field)
    model, tok = load_policy(config.model)
    problems = task.problems(config.split)[: config.problems]
    if not problems:
        raise ValueError(f"task {config.task!r} has no {config.split} problems")
    _warn_unrepresentable(tok, task, problems)
    if config.prm is not None:
        from o1search.reward import ProcessRewardModel

        evaluator: Any = ProcessRewardModel.load(config.prm)
    else:
        # Partial paths get a neutral 0.5: the verifier only judges finished answers.
        evaluator = VerifierEvaluator(task, make_decoder(tok), partial_value=0.5)
    engine = Engine(model, tok, num_pages=8192, page_size=16, max_batch_tokens=4096)
    with torch.no_grad():
        row = _search_method(config.algo, None if config.algo == "greedy" else config.budget,
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


# ---------------------------------------------------------------------------------- train
#: Trainers ``o1search train`` runs.
TRAIN_ALGORITHMS = ("sft", "rest", "grpo")
_TRAIN_RUN = "train-run"  # the output marker's kind of a ReST run folder


@dataclasses.dataclass
class TrainRunConfig:
    """``o1search train``: SFT on a task's demonstrations, ReST rounds, or GRPO steps.

    Raises (``__post_init__``):
        ValueError: an unknown algorithm, counts below 1, no output folder.
    """

    task: str = _f("countdown", "a built-in task name or the path of a .jsonl file")
    algo: str = _f("sft", f"one of {', '.join(TRAIN_ALGORITHMS)}")
    out: str = _f("", "checkpoint folder to write (required)")
    model: str | None = _f(None, "start from this checkpoint (None: the shipped policy for "
                                 "rest/grpo, a fresh default policy for sft)")
    steps: int = _f(200, "SFT optimizer steps (sft, and per ReST round) / GRPO batches")
    rounds: int = _f(1, "ReST rounds")
    problems: int = _f(256, "training problems (from the train split)")
    samples: int = _f(8, "ReST samples per problem / GRPO group size")
    batch_size: int = _f(16, "GRPO problems per batch / SFT examples per step x 4")
    learning_rate: float | None = _f(None, "learning rate (None: each trainer's default)")
    eval_problems: int = _f(100, "test problems of greedy accuracy before/after (0: skip)")
    question_field: str = _f("question", "JSONL field of the question")
    answer_field: str = _f("answer", "JSONL field of the answer")
    solution_field: str | None = _f(None, "JSONL field with a step-by-step solution (sft)")
    seed: int = _f(0, "seed")
    progress: bool = _f(True, "progress bars")
    overwrite: bool = _f(False, "write into a folder of other files (they are kept), or over "
                                "the input checkpoint")
    resume: bool = _f(False, "continue the ReST run in ``out`` from its latest round")

    def __post_init__(self) -> None:
        if self.algo not in TRAIN_ALGORITHMS:
            raise ValueError(f"unknown training algorithm {self.algo!r}; use one of "
                             f"{', '.join(TRAIN_ALGORITHMS)}")
        if not self.out:
            raise ValueError("an output folder is required (--out DIR)")
        for name in ("steps", "rounds", "problems", "samples", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_problems < 0:
            raise ValueError(f"eval_problems must be >= 0, got {self.eval_problems}")
        if self.algo == "grpo" and self.samples < 2:
            raise ValueError("grpo needs samples >= 2 (a group baseline)")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.resume and self.algo != "rest":
            raise ValueError("--resume continues a ReST run (--algo rest); sft and grpo "
                             "write one checkpoint at the end")


def run_train(config: TrainRunConfig, *, echo: Callable[[str], None] | None = print
              ) -> dict[str, Any]:
    """Train a policy (``o1search train``) and save it to ``config.out``.

    Parameters:
        config: a :class:`TrainRunConfig`.
        echo: where per-round metric lines go (None: silent).

    Returns:
        ``{"config", "metrics": [per round / step dicts], "greedy_accuracy_before",
        "greedy_accuracy_after", "checkpoint"}`` (accuracies None when
        ``eval_problems == 0``).

    Raises:
        FileNotFoundError: a missing model or task file.
        ValueError: a bad task file; ``sft`` on a task without solution traces.
    """
    if config.model is not None and not Path(config.model).exists():
        raise FileNotFoundError(f"no policy checkpoint at {config.model!r}")
    from o1search.checkpoint import (
        LATEST_FILE,
        OutputPathError,
        atomic_output_dir,
        check_output_dir,
        set_latest,
    )

    # The output is checked before any work: a bad --out must not cost a training run.
    out = check_output_dir(config.out, overwrite=config.overwrite, what="--out")
    if config.model is not None and not config.overwrite and \
            out.resolve() == Path(config.model).expanduser().resolve():
        raise OutputPathError(
            f"--out {config.out!r} is the input checkpoint (--model); write the trained policy "
            "to a new folder so the input stays to compare against (or pass --overwrite)")
    import torch

    from o1search.learn import SFTConfig, save_checkpoint, train_sft
    from o1search.policy import build_default_policy, default_policy_path, evaluate_policy, \
        load_policy

    say = echo or (lambda s: None)
    policy_dir = Path(config.model) if config.model else default_policy_path()
    if config.task.endswith(".jsonl") or os.path.isfile(config.task):
        from o1search.tasks import get_task

        task = get_task(config.task, question_field=config.question_field,
                        answer_field=config.answer_field, solution_field=config.solution_field)
    else:
        task = _load_task(config.task, policy_dir)
    fingerprint = {k: v for k, v in dataclasses.asdict(config).items()
                   if k not in ("rounds", "progress", "resume", "overwrite")}
    resume_state: dict[str, Any] | None = None
    if config.resume:
        from o1search.checkpoint import load_checkpoint

        if not (out / LATEST_FILE).is_file():
            raise OutputPathError(f"--resume: {config.out!r} holds no ReST run to continue (no "
                                  "'latest' round); start it without --resume")
        ck = load_checkpoint(out)
        model, tok = ck.model, ck.tokenizer
        resume_state = ck.extra_state.get("train_run")
        if not isinstance(resume_state, dict) or resume_state.get("config") != fingerprint:
            raise ValueError(f"--resume: the run in {config.out!r} was started with other "
                             "options; resume it with the same ones (only --rounds may change)")
    elif config.algo == "sft" and config.model is None:
        model, tok = build_default_policy(task)
    else:
        model, tok = load_policy(config.model)
    train = task.problems("train")[: config.problems]
    if not train:
        raise ValueError(f"task {config.task!r} has no training problems")
    test = task.problems("test")[: config.eval_problems]
    _warn_unrepresentable(tok, task, train + test)

    def greedy() -> float | None:
        if not test:
            return None
        with torch.no_grad():
            return evaluate_policy(model, tok, task, test, max_new_tokens=96).accuracy

    before = greedy() if resume_state is None else resume_state["before"]
    metrics: list[dict[str, float]] = [] if resume_state is None else \
        [dict(m) for m in resume_state["metrics"]]
    if config.algo == "sft":
        rng = random.Random(f"train-demos:{config.seed}")
        examples = [(task.prompt(p), task.demonstration(p, rng)) for p in train]
        if not any(c.strip() for _, c in examples):
            raise ValueError(f"task {config.task!r} has no solution traces to imitate; give "
                             "the JSONL solution field (--solution-field) or train with "
                             "--algo rest (search finds the solutions)")
        res = train_sft(model, tok, examples, SFTConfig(
            learning_rate=config.learning_rate or 1e-2, warmup_steps=min(100, config.steps // 10),
            batch_size=64, max_steps=config.steps, max_length=256, seed=config.seed,
            progress=config.progress))
        metrics.append({"steps": res.steps, "loss_first": res.losses[0],
                        "loss_last": res.losses[-1], "seconds": res.seconds})
    elif config.algo == "rest":
        from o1search.learn.rest import ReSTTrainer
        from o1search.learn.rest_config import ReSTConfig

        trainer = ReSTTrainer(model, tok, task, ReSTConfig(
            algorithm="best_of_n", num_samples=config.samples, seed=config.seed,
            sft=SFTConfig(learning_rate=config.learning_rate or 3e-4,
                          warmup_steps=min(10, config.steps // 3), max_steps=config.steps,
                          batch_size=64, max_length=256, seed=config.seed,
                          progress=config.progress)))
        # ``out`` is a run folder: round-N/ checkpoints and a ``latest`` pointer, written after
        # every round, so an interrupted run loses at most the round in progress (--resume).
        start = 0
        if resume_state is None:
            with atomic_output_dir(out, kind=_TRAIN_RUN, overwrite=config.overwrite):
                pass  # a fresh, empty run folder (an earlier run of ours is replaced)
        else:
            start = int(resume_state["round"])
            trainer.load_state_dict(resume_state["trainer"])
            say(f"resuming {config.out} after round {start}")
        for r in range(start, config.rounds):
            m = {k: float(v) for k, v in trainer.round(train, r).items()}
            if test:
                model.eval()
                m["greedy_accuracy"] = float(greedy())  # type: ignore[arg-type]
                prev = metrics[-1].get("greedy_accuracy", before) if metrics else before
                if prev is not None and m["greedy_accuracy"] < prev:
                    say(f"warning: round {r + 1} lowered greedy accuracy on {len(test)} test "
                        f"problems from {prev:.3f} to {m['greedy_accuracy']:.3f}; earlier "
                        f"rounds stay in {config.out}/round-N")
            metrics.append(m)
            say(json.dumps({"round": r, **{k: round(v, 4) for k, v in m.items()}}))
            name = f"round-{r + 1}"
            save_checkpoint(out / name, model, tok, extra_state={"train_run": {
                "round": r + 1, "trainer": trainer.state_dict(), "metrics": metrics,
                "before": before, "config": fingerprint}})
            set_latest(out, name, kind=_TRAIN_RUN)
    else:
        from o1search.learn.grpo import GRPOTrainer
        from o1search.learn.grpo_config import GRPOConfig

        trainer = GRPOTrainer(model, tok, task, GRPOConfig(
            num_generations=config.samples, learning_rate=config.learning_rate or 1e-4,
            seed=config.seed))
        rng = random.Random(f"train-grpo:{config.seed}")
        from tqdm.auto import tqdm

        for step in tqdm(range(config.steps), desc="grpo", disable=not config.progress):
            batch = rng.sample(train, min(config.batch_size, len(train)))
            m = {k: float(v) for k, v in trainer.step(batch).items()}
            metrics.append(m)
            if not config.progress:
                say(json.dumps({"step": step, **{k: round(v, 4) for k, v in m.items()}}))
    model.eval()
    after = greedy()
    if before is not None and after is not None and after < before:
        say(f"warning: greedy accuracy fell from {before:.3f} to {after:.3f} on "
            f"{len(test)} test problems; the input checkpoint is unchanged")
    if config.algo == "rest":
        ckpt = out / (out / LATEST_FILE).read_text(encoding="utf-8").strip()
    else:
        ckpt = save_checkpoint(out, model, tok, overwrite=config.overwrite)
    return {"config": dataclasses.asdict(config), "metrics": metrics,
            "greedy_accuracy_before": before, "greedy_accuracy_after": after,
            "checkpoint": str(ckpt)}


# ---------------------------------------------------------------------------------- demo
def _key(p: Any) -> tuple:
    return tuple(sorted(p.metadata["nums"])), p.metadata["target"]


def _fresh_problems(task: Any, n: int, seed: int, exclude: Sequence[Any]) -> list[Any]:
    """``n`` Countdown problems from the policy's generator (another seed), none of them in
    ``exclude`` (the policy's splits): unseen by the policy, disjoint from the test set."""
    from o1search.tasks import CountdownTask

    seen = {_key(p) for p in exclude}
    pool = CountdownTask(**{**{k: getattr(task, k) for k in ("num_count", "check_prob",
                                                            "correction_prob")},
                            "max_number": task.max_number, "seed": seed,
                            "n_train": n + len(seen), "n_test": 0})
    out = [p for p in pool.problems("train") if _key(p) not in seen]
    return out[:n]


def _retrain_policy(task: Any, config: DemoConfig, out: Path, bar: Any) -> tuple[Any, Any, Path]:
    """Train the default policy from scratch on the task's demonstrations (SFT)."""
    from o1search.learn import SFTConfig, save_checkpoint, train_sft
    from o1search.policy import PolicyConfig, build_default_policy

    pcfg = PolicyConfig(seed=config.seed)
    model, tok = build_default_policy(task, pcfg)
    # Training split plus fresh problems with larger numbers: the 3-number 1..10 space is
    # small enough to memorize; broader problems teach the same skills (test split excluded).
    test = task.problems("test")
    broad = _fresh_problems(task, 4000, 10_000 + config.seed, test + task.problems("train"))
    rng = random.Random(f"demo-demos:{config.seed}")
    pool = task.problems("train") + broad
    examples = [(task.prompt(p), task.demonstration(p, rng)) for p in pool]
    sft = SFTConfig(learning_rate=1e-2, warmup_steps=min(100, config.policy_steps // 10),
                    batch_size=64, max_steps=config.policy_steps,
                    max_length=pcfg.max_position_embeddings, seed=config.seed,
                    progress=config.progress)
    bar.set_postfix_str("SFT of a fresh policy")
    res = train_sft(model, tok, examples, sft)
    path = out / "policy"
    report = {"task": {"name": "countdown", "knobs": _task_knobs(None)},
              "steps": res.steps, "final_loss": res.losses[-1] if res.losses else None,
              "train_seconds": res.seconds, "examples": len(examples)}
    save_checkpoint(path, model, tok,
                    extra_files={"training_report.json": json.dumps(report, indent=2) + "\n"})
    return model.eval(), tok, path


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The comparison as a fixed-width text table (method, budget, accuracy, tokens, time).

    Parameters:
        rows: dicts with ``method``, ``budget``, ``accuracy``, ``mean_generated_tokens``,
            ``seconds``, ``problems``.

    Returns:
        The table, one line per row, with a header.
    """
    lines = [f"{'method':<11}{'budget':>8}{'accuracy':>10}{'tokens/problem':>16}"
             f"{'seconds':>9}{'problems':>10}"]
    lines.append("-" * len(lines[0]))
    for r in rows:
        b = "-" if r["budget"] is None else str(r["budget"])
        lines.append(f"{r['method']:<11}{b:>8}{r['accuracy']:>10.3f}"
                     f"{r['mean_generated_tokens']:>16.1f}{r['seconds']:>9.1f}"
                     f"{r['problems']:>10}")
    return "\n".join(lines)


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

    from o1search.engine import Engine, SamplingParams
    from o1search.checkpoint import atomic_output_dir, check_output_dir
    from o1search.learn import SFTConfig, save_checkpoint
    from o1search.learn.rest import ReSTTrainer
    from o1search.learn.rest_config import ReSTConfig
    from o1search.policy import default_policy_path, encode_prompt, load_policy
    from o1search.reward import (
        PRMTrainConfig,
        ProcessRewardModel,
        mc_step_labels,
        sample_traces,
        train_prm,
    )
    from o1search.search import EngineGenerator, derive_seed, make_decoder
    from o1search.tasks import CountdownTask
    from o1search.viz import plot_accuracy_vs_tokens, plot_learning_curves, write_tree_html

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

        # 1. Policy -------------------------------------------------------------------------
        t0 = stage("policy")
        if config.retrain_policy:
            task = CountdownTask(**_DEFAULT_KNOBS)
            policy, tok, policy_dir = _retrain_policy(task, config, work, bar)
            policy_source = "retrained"
        else:
            if config.policy is not None and not Path(config.policy).expanduser().exists():
                raise FileNotFoundError(f"no policy checkpoint at {config.policy!r}")
            policy, tok = load_policy(config.policy)
            policy_dir = Path(config.policy).expanduser() if config.policy else default_policy_path()
            policy_source = "checkpoint" if config.policy else "shipped"
            task = CountdownTask(**_task_knobs(policy_dir))
        missing = sorted(set(task.alphabet()) - set(tok.get_vocab()))
        if missing:
            raise ValueError(f"the policy at {policy_dir} cannot write Countdown ({missing} are not "
                             "in its vocabulary); use the shipped policy or --retrain-policy")
        done("policy", t0)
        say(f"policy: {policy_source} ({policy_dir}), "
            f"{sum(p.numel() for p in policy.parameters())} parameters")

        decode = make_decoder(tok)
        test = task.problems("test")
        eval_problems = test[: config.eval_problems]
        seen = task.problems("train") + test
        engine = Engine(policy, tok, num_pages=8192, page_size=16, max_batch_tokens=4096)
        gen = EngineGenerator(engine, tok, step_delimiter="\n")
        sampling = SamplingParams(temperature=1.0)

        def as_search_problems(ps: Sequence[Any], seed: int) -> list[Any]:
            from o1search.search import SearchProblem

            return [SearchProblem(tuple(encode_prompt(tok, task.prompt(p))), p,
                                  derive_seed(seed, p.id)) for p in ps]

        # 2. PRM data: sample solutions of fresh problems, label steps by roll-outs -----------
        t0 = stage("PRM data")
        prm_probs = _fresh_problems(task, config.prm_problems, 1000 + config.seed, seen)
        with torch.no_grad():
            traces = sample_traces(gen, as_search_problems(prm_probs, config.seed),
                                   config.prm_samples, sampling=sampling,
                                   max_new_tokens=config.max_new_tokens, seed=config.seed,
                                   verifier=task, decoder=decode)
            flat = [t for ts in traces for t in ts]
            labels = mc_step_labels(gen, task, flat, config.prm_rollouts, step_delimiter="\n",
                                    tokenizer=tok, eos_token_ids=engine.eos_token_ids,
                                    sampling=sampling, max_new_tokens=config.max_new_tokens,
                                    seed=config.seed, decoder=decode)
        examples = [lab.to_example(soft=True) for lab in labels if lab.step_ends]
        soft = np.concatenate([lab.soft for lab in labels if lab.step_ends]) if examples \
            else np.zeros(0)
        done("prm_data", t0)

        # 3. PRM training (initialised from the policy) ----------------------------------------
        t0 = stage("PRM training")
        prm = ProcessRewardModel(copy.deepcopy(policy), tok, step_delimiter="\n", aggregation="min")
        if not examples:
            raise ValueError("no PRM training data was produced (every sampled solution was "
                             "empty); raise prm_problems or prm_samples")
        prm_res = train_prm(prm, examples, PRMTrainConfig(learning_rate=1e-3, batch_size=32,
                                                                num_epochs=config.prm_epochs,
                                                                seed=config.seed))
        prm_path = prm.save(work / "prm")
        done("prm_training", t0)
        say(f"PRM: {len(flat)} sampled solutions ({np.mean([t.reward >= 0.5 for t in flat]):.0%} "
            f"correct), {soft.size} labelled steps, {prm_res.steps} steps, loss "
            f"{np.mean(prm_res.losses[:5]):.3f} -> {np.mean(prm_res.losses[-5:]):.3f}")

        # 4. Search comparison at equal token budgets -----------------------------------------
        t0 = stage("search comparison")
        rows: list[dict[str, Any]] = []
        tree_row: dict[str, Any] | None = None
        with torch.no_grad():
            for name in config.methods:
                for budget in ([None] if name == "greedy" else config.budgets):
                    row = _search_method(name, budget, eval_problems, task, engine, tok, prm,
                                         seed=config.seed, max_new_tokens=config.max_new_tokens,
                                         progress=config.progress, has_prm=True,
                                         temperature=config.temperature)
                    rows.append(row)
                    if name == config.tree_method:
                        tree_row = row  # the largest budget's tree ends up in the viewer
        done("search", t0)
        public_rows = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                        if k not in ("results", "correct")} for r in rows]
        table = format_table(public_rows)
        say(f"\nsearch on {len(eval_problems)} held-out Countdown problems (PRM-guided, "
            f"token budget per problem):\n{table}")

        # 5. One search + learn round: ReST on verified search solutions ------------------------
        t0 = stage("search + learn")
        learner = copy.deepcopy(policy)
        rest_cfg = ReSTConfig(
            algorithm="best_of_n", num_samples=config.rest_samples,
            max_new_tokens=config.max_new_tokens, seed=config.seed,
            sft=SFTConfig(learning_rate=config.rest_lr, warmup_steps=min(10, config.rest_sft_steps // 3),
                          max_steps=config.rest_sft_steps, batch_size=64, max_length=256,
                          seed=config.seed, progress=config.progress))
        trainer = ReSTTrainer(learner, tok, task, rest_cfg)
        rest_eval = test[: config.rest_eval_problems]
        rest_train = _fresh_problems(task, config.rest_problems, 2000 + config.seed, seen)
        with torch.no_grad():
            before, _ = trainer.greedy_solutions(rest_eval)
        metrics = trainer.round(rest_train, 0)
        with torch.no_grad():
            after, _ = trainer.greedy_solutions(rest_eval)
        acc_before = sum(x is not None for x in before) / len(rest_eval)
        acc_after = sum(x is not None for x in after) / len(rest_eval)
        save_checkpoint(work / "policy_after_rest", learner, tok)
        done("rest", t0)
        say(f"\nsearch + learn (one ReST round on {len(rest_train)} fresh problems: "
            f"{int(metrics['search_solved'])} solved by search, {int(metrics['new_examples'])} "
            f"verified solutions, {int(metrics['sft_steps'])} SFT steps):\n"
            f"  greedy accuracy on {len(rest_eval)} held-out problems: {acc_before:.3f} -> "
            f"{acc_after:.3f} ({acc_after - acc_before:+.3f})")

        # 6. Outputs -------------------------------------------------------------------------
        t0 = stage("outputs")
        curves: dict[str, list[tuple[float, float]]] = {}
        baselines: dict[str, float] = {}
        for r in rows:
            if r["method"] == "greedy":
                baselines[f"greedy {r['accuracy']:.2f}"] = r["accuracy"]
                curves["greedy"] = [(max(r["mean_generated_tokens"], 1.0), r["accuracy"])]
            else:
                curves.setdefault(r["method"], []).append((max(r["mean_generated_tokens"], 1.0),
                                                           r["accuracy"]))
        plot = plot_accuracy_vs_tokens(
            curves, work / "accuracy_vs_tokens.png", baselines=baselines,
            title=f"Countdown, {len(eval_problems)} held-out problems, PRM-guided search")
        learning_plot = plot_learning_curves(
            {"PRM training loss": prm_res.losses}, work / "learning_curves.png",
            title="PRM training loss; greedy accuracy before/after ReST",
            xlabel="optimizer step / ReST round", ylabel="loss",
            secondary={"greedy accuracy": [(0, acc_before), (1, acc_after)]},
            secondary_label="greedy accuracy")
        files = {"report": work / "report.json", "plot": plot, "learning_plot": learning_plot,
                 "prm": prm_path, "policy_after_rest": work / "policy_after_rest"}
        if config.retrain_policy:
            files["policy"] = policy_dir
        if tree_row is not None:
            # The biggest tree shows the most search; len(tree) is its node count.
            k = max(range(len(tree_row["results"])), key=lambda i: len(tree_row["results"][i].tree))
            res = tree_row["results"][k]
            prob = eval_problems[k]
            files["tree_html"] = write_tree_html(
                work / "tree.html", res.tree, decode=decode, chosen=res.node,
                title=f"o1search {tree_row['method']} tree — {prob.id}",
                meta={"problem": prob.question, "reference answer": prob.answer,
                      "search answer": res.answer, "correct": tree_row["correct"][k],
                      "method": tree_row["method"], "token budget": tree_row["budget"],
                      "generated tokens": res.compute.generated_tokens})
        done("outputs", t0)
        bar.close()
        report = {
            "demo": "o1search",
            "config": {k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in dataclasses.asdict(config).items()},
            "policy": {"source": policy_source, "path": str(final(policy_dir)),
                       "parameters": sum(p.numel() for p in policy.parameters())},
            "task": {"name": "countdown", "knobs": _task_knobs(policy_dir)},
            "prm": {"problems": len(prm_probs), "solutions": len(flat),
                    "solution_accuracy": float(np.mean([t.reward >= 0.5 for t in flat])),
                    "labelled_steps": int(soft.size),
                    "mean_soft_label": float(soft.mean()) if soft.size else None,
                    "train_steps": prm_res.steps,
                    "loss_first": float(np.mean(prm_res.losses[:5])),
                    "loss_last": float(np.mean(prm_res.losses[-5:])),
                    "path": str(final(prm_path))},
            "comparison": public_rows,
            "rest": {"problems": len(rest_train), "eval_problems": len(rest_eval),
                     "greedy_accuracy_before": acc_before, "greedy_accuracy_after": acc_after,
                     "metrics": {k: round(float(v), 4) for k, v in metrics.items()}},
            "files": {k: str(final(v)) for k, v in files.items()},
            "timings_s": timings,
            "total_s": round(time.perf_counter() - t_start, 2),
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg")
                        else None, "torch_threads": torch.get_num_threads()},
        }
        files["report"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    say(f"\nwrote {out}/: report.json, accuracy_vs_tokens.png, learning_curves.png, tree.html, "
        f"prm/, policy_after_rest/  ({report['total_s']:.0f} s)")
    return DemoResult(report=report, table=table,
                      files={k: out / Path(v).relative_to(work) for k, v in files.items()})

