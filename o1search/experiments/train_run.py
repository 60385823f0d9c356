"""``o1search train``: SFT on a task's demonstrations, ReST rounds (a resumable run folder of
round checkpoints) or GRPO steps, with greedy accuracy before and after."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from o1search.experiments.options import help_field as _f
from o1search.experiments.task_setup import load_task, warn_unrepresentable

__all__ = ["TRAIN_ALGORITHMS", "TrainRunConfig", "run_train"]

#: Trainers ``o1search train`` runs.
TRAIN_ALGORITHMS = ("sft", "rest", "grpo", "ppo", "dpo")
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
    num_pages: int | None = _f(None, "KV pages of the search engine (None: sized from "
                                     "--kv-memory)")
    kv_memory: int | None = _f(None, "bytes the search engine's KV pool may take (None: 25% "
                                     "of the available memory, at most 4 GiB, no more than "
                                     "the run holds)")
    threads: int | None = _f(None, "torch CPU threads (None: half the CPUs, at least 1)")
    dtype: str = _f("float32", "weights, optimizer state and KV dtype: float32, bfloat16 "
                               "(half the memory; no float32 master copy) or float16")
    metrics_file: str | None = _f(None, "JSONL of training metrics, one row per logged SFT "
                                        "step / ReST round / GRPO step (outside --out)")
    logging_steps: int = _f(10, "SFT optimizer steps between metric rows")
    gradient_accumulation_steps: int = _f(1, "SFT micro-batches per optimizer step")
    report_to: str = _f("none", "also report the metric rows to 'tensorboard' or 'wandb' "
                                "(through their own libraries, when installed)")
    logging_dir: str | None = _f(None, "TensorBoard / W&B folder (default: beside "
                                       "--metrics-file, else ./o1search_logs)")
    temperature: float = _f(1.0, "sampling temperature of ReST's search and GRPO/PPO rollouts")
    beta: float | None = _f(None, "KL coefficient to the frozen reference (GRPO, PPO, DPO; "
                                  "None: each trainer's default, 0 / 0.05 / 0.1)")

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
        if self.report_to not in ("none", "tensorboard", "wandb"):
            raise ValueError(f"report_to must be none, tensorboard or wandb, got "
                             f"{self.report_to!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.beta is not None and not self.beta >= 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.beta is not None and self.algo not in ("grpo", "ppo", "dpo"):
            raise ValueError("--beta is the KL coefficient of grpo, ppo and dpo")
        if self.algo == "grpo" and self.samples < 2:
            raise ValueError("grpo needs samples >= 2 (a group baseline)")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        for name in ("logging_steps", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.metrics_file is not None:
            m, o = Path(self.metrics_file).resolve(), Path(self.out).resolve()
            if m == o or o in m.parents:
                raise ValueError(f"--metrics-file {self.metrics_file!r} lies inside --out "
                                 f"{self.out!r}, which is replaced as a whole; put it beside")
            if m.is_dir():
                raise ValueError(f"--metrics-file {self.metrics_file!r} is a folder")
            if m.exists() and not (self.overwrite or self.resume):
                raise ValueError(f"--metrics-file {self.metrics_file!r} exists; pass "
                                 "--overwrite to replace it (or --resume to append)")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {self.dtype!r}")
        if self.resume and self.algo != "rest":
            raise ValueError("--resume continues a ReST run (--algo rest); sft and grpo "
                             "write one checkpoint at the end")


class _MetricsFile:
    """The run's metrics JSONL: rows appended as training goes (flushed each row); with
    ``report_to`` the numbers also go to TensorBoard or Weights & Biases."""

    def __init__(self, path: str | None, append: bool, *, report_to: str = "none",
                 logging_dir: str | None = None, run_config: dict[str, Any] | None = None
                 ) -> None:
        self.path = None if path is None else Path(path)
        self.sft_log: str | None = None
        self._tb: Any = None
        self._wandb: Any = None
        self._count = 0
        folder = logging_dir or (str(self.path.parent / "logs") if self.path else
                                 "o1search_logs")
        if report_to == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ValueError("--report-to tensorboard needs the tensorboard package (pip "
                                 "install tensorboard)") from None
            self._tb = SummaryWriter(log_dir=folder)
        elif report_to == "wandb":
            try:
                import wandb
            except ImportError:
                raise ValueError("--report-to wandb needs the wandb package (pip install "
                                 "wandb; WANDB_MODE=offline runs without an account)") from None
            self._wandb = wandb.init(project="o1search", dir=folder, config=run_config)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not append:
                self.path.write_text("", encoding="utf-8")
        if self.path is not None or self._tb is not None or self._wandb is not None:
            import tempfile

            # The SFT trainer writes its own rows here; take_sft moves them in, tagged.
            self._tmp = tempfile.mkdtemp(prefix="o1search-sft-log-")
            self.sft_log = os.path.join(self._tmp, "sft.jsonl")

    def write(self, row: dict[str, Any]) -> None:
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
        self._count += 1
        nums = {f"{row.get('phase', 'run')}/{k}": float(v) for k, v in row.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}
        step = int(row.get("step") or row.get("round") or self._count)
        if self._tb is not None:
            for k, v in nums.items():
                self._tb.add_scalar(k, v, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(nums)

    def take_sft(self, **tags: Any) -> None:
        """Move the SFT trainer's own rows (one per logged step) in, tagged."""
        if self.sft_log is None or not os.path.exists(self.sft_log):
            return
        with open(self.sft_log, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    self.write({"phase": "sft", **tags, **json.loads(line)})
        os.remove(self.sft_log)

    def close(self) -> None:
        if self.sft_log is not None:
            import shutil

            shutil.rmtree(self._tmp, ignore_errors=True)
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


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
    from o1search.outputs import (
        LATEST_FILE,
        OutputPathError,
        check_output_dir,
    )

    # The output is checked before any work: a bad --out must not cost a training run.
    out = check_output_dir(config.out, overwrite=config.overwrite, what="--out")
    if config.model is not None and not config.overwrite and \
            out.resolve() == Path(config.model).expanduser().resolve():
        raise OutputPathError(
            f"--out {config.out!r} is the input checkpoint (--model); write the trained policy "
            "to a new folder so the input stays to compare against (or pass --overwrite)")
    import torch

    from o1search.policy import (
        build_default_policy,
        default_policy_path,
        evaluate_policy,
        load_policy,
    )

    say = echo or (lambda s: None)
    policy_dir = Path(config.model) if config.model else default_policy_path()
    if config.task.endswith(".jsonl") or os.path.isfile(config.task):
        from o1search.tasks import get_task

        task = get_task(config.task, question_field=config.question_field,
                        answer_field=config.answer_field, solution_field=config.solution_field)
    else:
        task = load_task(config.task, policy_dir)
    fingerprint = {k: v for k, v in dataclasses.asdict(config).items()
                   if k not in ("rounds", "progress", "resume", "overwrite", "num_pages",
                                "kv_memory", "threads", "metrics_file", "logging_steps",
                                "report_to", "logging_dir")}
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
        model, tok = load_policy(config.model, dtype=getattr(torch, config.dtype))
    model = model.to(getattr(torch, config.dtype))
    train = task.problems("train")[: config.problems]
    if not train:
        raise ValueError(f"task {config.task!r} has no training problems")
    test = task.problems("test")[: config.eval_problems]
    warn_unrepresentable(tok, task, train + test)
    engine = None
    if config.algo in ("rest", "grpo", "ppo", "dpo"):
        # The search engine's pool and the threads, sized for this model and run.
        from o1search.experiments.resources import plan_resources
        from o1search.learn.rollouts import engine_for
        from o1search.policy import encode_prompt

        longest = max(len(encode_prompt(tok, task.prompt(p))) for p in train[:256])
        plan = plan_resources(
            model.config, dtype_bytes=next(model.parameters()).element_size(),
            need_tokens=min(len(train), 32) * (longest + (config.samples + 1) * 96),
            num_pages=config.num_pages, kv_memory=config.kv_memory, threads=config.threads)
        torch.set_num_threads(plan.threads)
        if echo is not None:
            print(f"o1search: {plan.describe()}", file=sys.stderr)
        engine = engine_for(model, tok, num_pages=plan.num_pages, page_size=plan.page_size,
                            max_batch_tokens=4096)
    elif config.threads is not None:
        torch.set_num_threads(config.threads)

    def greedy() -> float | None:
        if not test:
            return None
        with torch.no_grad():
            return evaluate_policy(model, tok, task, test, max_new_tokens=96).accuracy

    before = greedy() if resume_state is None else resume_state["before"]
    log = _MetricsFile(config.metrics_file, append=resume_state is not None,
                       report_to=config.report_to, logging_dir=config.logging_dir,
                       run_config=dataclasses.asdict(config))
    try:
        return _train(config, task, model, tok, engine, train, test, out, before, greedy,
                      resume_state, fingerprint, log, say)
    finally:
        log.close()


def _train(config: TrainRunConfig, task: Any, model: Any, tok: Any, engine: Any,
           train: list[Any], test: list[Any], out: Path, before: float | None,
           greedy: Callable[[], float | None], resume_state: dict[str, Any] | None,
           fingerprint: dict[str, Any], log: _MetricsFile, say: Callable[[str], None]
           ) -> dict[str, Any]:
    from o1search.checkpoint import save_checkpoint
    from o1search.learn import SFTConfig, train_sft
    from o1search.outputs import (
        LATEST_FILE,
        atomic_output_dir,
        record_entries,
        set_latest,
    )

    sft_log = {"log_path": log.sft_log, "log_every": config.logging_steps,
               "grad_accum_steps": config.gradient_accumulation_steps}
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
            progress=config.progress, **sft_log))
        log.take_sft()
        metrics.append({"steps": res.steps, "loss_first": res.losses[0],
                        "loss_last": res.losses[-1], "seconds": res.seconds})
    elif config.algo == "rest":
        from o1search.learn.rest import ReSTTrainer
        from o1search.learn.rest_config import ReSTConfig

        trainer = ReSTTrainer(model, tok, task, engine=engine, config=ReSTConfig(
            algorithm="best_of_n", num_samples=config.samples, seed=config.seed,
            temperature=config.temperature,
            sft=SFTConfig(learning_rate=config.learning_rate or 3e-4,
                          warmup_steps=min(10, config.steps // 3), max_steps=config.steps,
                          batch_size=64, max_length=256, seed=config.seed,
                          progress=config.progress, **sft_log)))
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
            log.take_sft(round=r + 1)
            log.write({"phase": "rest", "event": "round", "round": r + 1, **m})
            say(json.dumps({"round": r, **{k: round(v, 4) for k, v in m.items()}}))
            name = f"round-{r + 1}"
            # Listed before it is written: a run killed mid-save is still ours to resume.
            record_entries(out, kind=_TRAIN_RUN, add=(name,))
            save_checkpoint(out / name, model, tok, extra_state={"train_run": {
                "round": r + 1, "trainer": trainer.state_dict(), "metrics": metrics,
                "before": before, "config": fingerprint}})
            set_latest(out, name, kind=_TRAIN_RUN)
    elif config.algo == "dpo":
        # Step-level DPO: MCTS trees on the training problems (values from verified
        # roll-outs), sibling steps ranked by value into preference pairs, DPO against the
        # policy at the start of each round (o1search.learn.loop).
        from o1search.learn.dpo_config import DPOConfig
        from o1search.learn.loop import SearchLearnLoop
        from o1search.learn.loop_config import LoopConfig
        from o1search.learn.rest_config import ReSTConfig

        dpo = DPOConfig(learning_rate=config.learning_rate or 1e-4, seed=config.seed,
                        **({} if config.beta is None else {"beta": config.beta}))
        loop = SearchLearnLoop(model, tok, task, train, LoopConfig(
            method="dpo", rounds=config.rounds, eval_before=False, seed=config.seed,
            progress=config.progress, dpo=dpo,
            rest=ReSTConfig(algorithm="mcts", num_samples=config.samples,
                            temperature=config.temperature, seed=config.seed)),
            engine=engine)
        for row in loop.run():
            m = {k: float(v) for k, v in row.items() if isinstance(v, (int, float))}
            metrics.append(m)
            log.write({"phase": "dpo", "event": "round", **m})
            say(json.dumps({k: round(v, 4) for k, v in m.items()}))
    else:
        kl = {} if config.beta is None else {"kl_coef": config.beta}
        if config.algo == "grpo":
            from o1search.learn.grpo import GRPOTrainer
            from o1search.learn.grpo_config import GRPOConfig

            trainer: Any = GRPOTrainer(model, tok, task, engine=engine, config=GRPOConfig(
                num_generations=config.samples, learning_rate=config.learning_rate or 1e-4,
                temperature=config.temperature, seed=config.seed, **kl))
        else:
            from o1search.learn.ppo import PPOTrainer
            from o1search.learn.ppo_config import PPOConfig

            trainer = PPOTrainer(model, tok, task, engine=engine, config=PPOConfig(
                num_samples=config.samples, learning_rate=config.learning_rate or 1e-4,
                temperature=config.temperature, seed=config.seed, **kl))
        rng = random.Random(f"train-{config.algo}:{config.seed}")
        from tqdm.auto import tqdm

        for step in tqdm(range(config.steps), desc=config.algo, disable=not config.progress):
            batch = rng.sample(train, min(config.batch_size, len(train)))
            m = {k: float(v) for k, v in trainer.step(batch).items()}
            metrics.append(m)
            log.write({"phase": config.algo, "step": step + 1, **m})
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
    log.write({"event": "end", "greedy_accuracy_before": before,
               "greedy_accuracy_after": after, "checkpoint": str(ckpt)})
    return {"config": dataclasses.asdict(config), "metrics": metrics,
            "greedy_accuracy_before": before, "greedy_accuracy_after": after,
            "checkpoint": str(ckpt)}
