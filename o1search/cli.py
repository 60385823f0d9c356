"""The `o1search` command line. Only this module parses arguments; library code takes
config dataclasses."""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
from pathlib import Path
from typing import Any, NoReturn, Sequence


class UsageError(Exception):
    """A mistake the user can fix; printed as one line, exit code 2, no traceback."""


def _backend_report() -> dict:
    """Which attention/kernel backends can run on this machine, and why not when not."""
    report: dict = {}
    try:
        import torch

        cuda = torch.cuda.is_available()
        report["torch"] = {"usable": True, "version": torch.__version__, "cuda": cuda}
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        return {"torch": {"usable": False, "why": str(exc)}}
    import os

    if importlib.util.find_spec("triton") is None:
        report["triton"] = {"usable": False, "why": "triton is not installed (pip install o1search[triton])"}
    else:
        import triton

        interp = os.environ.get("TRITON_INTERPRET") == "1"
        usable = cuda or interp
        report["triton"] = {
            "usable": usable,
            "version": triton.__version__,
            "mode": "gpu" if cuda else ("interpreter (CPU, slow; for tests)" if interp else None),
        }
        if not usable:
            report["triton"]["why"] = "no CUDA GPU (set TRITON_INTERPRET=1 to run kernels on CPU for testing)"
    if importlib.util.find_spec("flash_attn") is None:
        report["flash_attn"] = {"usable": False, "why": "flash-attn is not installed (optional extra, GPU only)"}
    else:
        report["flash_attn"] = {"usable": cuda, **({} if cuda else {"why": "needs a CUDA GPU"})}
    return report


def cmd_info(args: argparse.Namespace) -> int:
    info: dict = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        from o1search import _native

        core = _native.core
        info.update(
            version=core.__version__,
            native_core=True,
            cuda_sources_built=bool(core.cuda_built),
            sanitizers=core.sanitize or None,
        )
    except ImportError as exc:
        info.update(native_core=False, native_core_error=str(exc))
    info["kernel_backends"] = _backend_report()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"o1search {info.get('version', '?')}  (python {info['python']}, {info['platform']})")
    print(f"  native core (o1search._core): {'built' if info['native_core'] else 'MISSING'}")
    if info["native_core"]:
        print(f"  CUDA sources compiled:        {'yes' if info['cuda_sources_built'] else 'no'}")
        if info.get("sanitizers"):
            print(f"  sanitizers:                   {info['sanitizers']}")
    else:
        print(f"    {info['native_core_error']}")
    print("  kernel backends:")
    for name, b in info["kernel_backends"].items():
        state = "usable" if b.get("usable") else "not usable"
        extra = b.get("version", "")
        if b.get("mode"):
            extra += f", {b['mode']}"
        if b.get("why"):
            extra += f" — {b['why']}"
        print(f"    {name:<11} {state}{(' (' + extra.strip(', ') + ')') if extra else ''}")
    return 0


def _budgets(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"budgets must be comma-separated integers, got {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("give at least one budget")
    return out


def _memory(text: str) -> int:
    from o1search.experiments.resources import parse_memory

    try:
        return parse_memory(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _methods(text: str) -> tuple[str, ...]:
    from o1search.experiments import ALGORITHMS

    out = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [m for m in out if m not in ALGORITHMS]
    if bad or not out:
        raise argparse.ArgumentTypeError(
            f"unknown method(s) {', '.join(bad) or '(none)'}; choose from {', '.join(ALGORITHMS)}")
    return out


def cmd_demo(args: argparse.Namespace) -> int:
    from o1search.experiments import DemoConfig, run_demo

    overrides = {k: v for k, v in dict(
        out=args.out, policy=args.policy, retrain_policy=args.retrain_policy, seed=args.seed,
        progress=not args.no_progress, eval_problems=args.eval_problems, budgets=args.budgets,
        methods=args.methods, policy_steps=args.policy_steps,
        overwrite=args.overwrite or None).items() if v is not None}
    config = DemoConfig.quick(**overrides) if args.quick else DemoConfig(**overrides)
    result = run_demo(config)
    if args.json:
        print(json.dumps(result.report))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from o1search.experiments import SearchRunConfig, run_search

    config = SearchRunConfig(
        task=args.task, algo=args.algo, budget=args.budget, problems=args.problems,
        split=args.split, model=args.model, prm=args.prm, question_field=args.question_field,
        answer_field=args.answer_field, max_new_tokens=args.max_new_tokens,
        step_delimiter=args.step_delimiter, system_prompt=args.system_prompt, out=args.out,
        overwrite=args.overwrite, batch=args.batch, dtype=args.dtype,
        num_pages=args.num_pages, kv_memory=args.kv_memory, threads=args.threads,
        temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
        tree_html=args.tree_html, seed=args.seed, progress=not args.no_progress,
        hard_budget=args.hard_budget, num_samples=args.num_samples,
        beam_width=args.beam_width, num_simulations=args.num_simulations,
        num_children=args.num_children, preset=args.preset, tree_problem=args.tree_problem)
    out = run_search(config, echo=lambda line: print(line, file=sys.stderr))
    if args.json:
        print(json.dumps(out, default=str))
        return 0
    for p in out["problems"]:
        mark = "ok  " if p["correct"] else "FAIL"
        why = "" if p["correct"] or not p.get("reason") else f": {p['reason']}"
        print(f"{mark} {p['id']}: {p['question'].strip()!r} -> answer {p['answer']!r} "
              f"(reference {p['reference']!r}, {p['generated_tokens']} tokens){why}")
    s = out["summary"]
    n = len(out["problems"])
    solved = sum(p["correct"] for p in out["problems"])
    print(f"{args.algo}: {solved}/{n} correct (accuracy {s['accuracy']:.3f}), "
          f"{s['mean_generated_tokens']:.1f} generated tokens per problem, {s['seconds']:.1f} s, "
          f"evaluator: {s['evaluator']}")
    if out["tree_html"]:
        print(f"tree viewer: {out['tree_html']}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from o1search.experiments import TrainRunConfig, run_train

    config = TrainRunConfig(
        task=args.task, algo=args.algo, out=args.out, model=args.model, steps=args.steps,
        rounds=args.rounds, problems=args.problems, samples=args.samples,
        batch_size=args.batch_size, learning_rate=args.lr, eval_problems=args.eval_problems,
        question_field=args.question_field, answer_field=args.answer_field,
        solution_field=args.solution_field, seed=args.seed, progress=not args.no_progress,
        overwrite=args.overwrite, resume=args.resume, num_pages=args.num_pages,
        kv_memory=args.kv_memory, threads=args.threads, dtype=args.dtype,
        metrics_file=args.metrics_file, logging_steps=args.logging_steps,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        temperature=args.temperature, beta=args.beta, report_to=args.report_to,
        logging_dir=args.logging_dir)
    out = run_train(config)
    b, a = out["greedy_accuracy_before"], out["greedy_accuracy_after"]
    if b is not None:
        print(f"greedy accuracy on {config.eval_problems} test problems: {b:.3f} -> {a:.3f}")
    print(f"saved {args.algo} policy to {out['checkpoint']}")
    return 0


def _benchmarks_dir() -> Path | None:
    """``benchmarks/`` of a source checkout: next to the package (editable or PYTHONPATH use),
    else in the current directory (an installed package run from its checkout); None otherwise."""
    for d in (Path(__file__).resolve().parent.parent / "benchmarks", Path.cwd() / "benchmarks"):
        if (d / "bench_core.py").is_file():
            return d
    return None


def cmd_convert(args: argparse.Namespace) -> int:
    from o1search.outputs import check_output_dir
    from o1search.policy.gguf import convert_gguf

    check_output_dir(args.out, overwrite=args.overwrite, what="--out")  # before the work
    out = convert_gguf(args.gguf, args.out, dtype=args.dtype, overwrite=args.overwrite)
    print(f"wrote {out}: a transformers checkpoint (use it as --model {out})")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import subprocess

    root = _benchmarks_dir()
    if root is None:
        raise UsageError("benchmarks ship with the source, not the wheel: clone the o1search "
                         "repository and run `o1search bench NAME` (or python benchmarks/NAME.py)"
                         " from the checkout")
    names = sorted(p.stem for p in root.glob("*.py"))
    if args.name is None or args.name == "list":
        print("benchmarks: " + ", ".join(names))
        return 0
    name = args.name[:-3] if args.name.endswith(".py") else args.name
    for cand in (name, f"bench_{name}"):
        if cand in names:
            script = root / f"{cand}.py"
            break
    else:
        raise UsageError(f"no benchmark {args.name!r} in {root}; available: {', '.join(names)}")
    extra = list(args.args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return subprocess.call([sys.executable, str(script), *extra], cwd=str(root.parent))


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2 through :class:`UsageError`)."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless it is None / False (the help says what then)
    or the help already names it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action) or text


class _SubParser(_Parser):
    """A command's parser: its help shows the defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)


_TASK_HELP = ("a built-in task (countdown, arithmetic, humaneval), rg:DATASET (a reasoning-gym "
              "dataset, e.g. rg:basic_arithmetic), or FILE.jsonl: GSM8K rows (question, answer "
              "ending '#### N'), MATH rows (problem, solution with \\boxed{}), or any fields "
              "named by --question-field / --answer-field")

_DESCRIPTION = ("o1search: search and learning for LLM reasoning. Run a demo of the whole "
                "roadmap, search a task with a policy, train a policy, convert a GGUF model, "
                "or see what this install can run.")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("o1search")
    except Exception:  # noqa: BLE001 - a source tree without metadata
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    from o1search.experiments import ALGORITHMS, TRAIN_ALGORITHMS

    p = _Parser(prog="o1search", description=_DESCRIPTION)
    p.add_argument("--version", action="version", version=f"o1search {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_SubParser)
    pi = sub.add_parser("info", help="version, native core and CUDA build, usable kernel backends")
    pi.add_argument("--json", action="store_true", help="print JSON")
    pi.set_defaults(func=cmd_info)

    pd = sub.add_parser(
        "demo", help="policy -> PRM -> search comparison -> search+learn, end to end on CPU",
        description="Run the whole roadmap on Countdown: reuse (or retrain) the default policy, "
        "train a PRM from Monte-Carlo step labels, compare greedy / best-of-N / beam / MCTS / "
        "DVTS at equal token budgets, run one ReST round; writes report.json, "
        "accuracy_vs_tokens.png, learning_curves.png and tree.html into --out.")
    pd.add_argument("--out", default=None, help="output folder (default ./o1search_out); an "
                    "earlier run there is replaced when the new one completes, a folder of "
                    "other files is refused")
    pd.add_argument("--overwrite", action="store_true",
                    help="write into a folder that holds other files (they are kept)")
    pd.add_argument("--quick", action="store_true", help="the short version (< 2 minutes)")
    pd.add_argument("--policy", default=None, help="policy checkpoint (default: shipped)")
    pd.add_argument("--retrain-policy", action="store_true", default=None,
                    help="train the default policy from scratch instead of loading one")
    pd.add_argument("--policy-steps", type=int, default=None, help="SFT steps when retraining")
    pd.add_argument("--eval-problems", type=int, default=None, help="held-out problems")
    pd.add_argument("--budgets", type=_budgets, default=None,
                    help="token budgets per problem, e.g. 64,128,256")
    pd.add_argument("--methods", type=_methods, default=None,
                    help=f"comma-separated subset of {','.join(ALGORITHMS)}")
    pd.add_argument("--seed", type=int, default=None)
    pd.add_argument("--no-progress", action="store_true", help="hide progress bars")
    pd.add_argument("--json", action="store_true", help="also print the report as JSON")
    pd.set_defaults(func=cmd_demo)

    ps = sub.add_parser("search", help="run one search algorithm on problems of a task")
    ps.add_argument("--model", default=None, help="policy checkpoint (default: shipped)")
    ps.add_argument("--task", default="countdown", help=_TASK_HELP)
    ps.add_argument("--algo", choices=ALGORITHMS, default="mcts", help="search method")
    ps.add_argument("--budget", type=int, default=256, help="generated tokens per problem")
    ps.add_argument("--problems", type=int, default=None,
                    help="the first N problems (default: all of a task file, 8 of a built-in)")
    ps.add_argument("--split", choices=("train", "test"), default=None,
                    help="search one split (default: a task file whole, in file order; a "
                    "built-in task's test split)")
    ps.add_argument("--prm", default=None, help="PRM checkpoint (e.g. o1search_out/prm); "
                    "default: the task's verifier guides the search (an oracle)")
    ps.add_argument("--question-field", default="question", help="JSONL question field")
    ps.add_argument("--answer-field", default="answer", help="JSONL answer field")
    ps.add_argument("--max-new-tokens", type=int, default=None,
                    help="longest completion (default 96, 384 for a chat model)")
    ps.add_argument("--step-delimiter", default=None,
                    help="text that ends a step (default: newline; blank line for chat models)")
    ps.add_argument("--system-prompt", default=None, help="chat models: the system turn")
    ps.add_argument("--out", default=None,
                    help="write one JSON line per problem to this file, as problems finish")
    ps.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    ps.add_argument("--batch", type=int, default=8, help="problems searched together")
    for flag, what in (("--num-samples", "best_of_n: completions per problem"),
                       ("--beam-width", "beam, dvts: beams kept per step"),
                       ("--num-simulations", "mcts: leaf expansions per problem at most"),
                       ("--num-children", "mcts: steps sampled per expansion")):
        ps.add_argument(flag, type=int, default=None,
                        help=f"{what} (default: the preset sized from --budget)")
    ps.add_argument("--tree-problem", default=None,
                    help="which problem's tree --tree-html shows: its id or its 0-based "
                         "position (default: the first)")
    ps.add_argument("--preset", choices=("benchmark", "cli"), default="benchmark",
                    help="benchmark: the configuration benchmarks/bench_search.py measured "
                         "(exact-verifier MCTS with widening when the verifier guides); cli: "
                         "the older sizing from --budget")
    ps.add_argument("--hard-budget", action="store_true",
                    help="never generate past --budget: the last requests are shortened to "
                         "fit (default: a round that starts under the budget runs whole)")
    ps.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                    help="weights and KV cache dtype (bfloat16/float16 halve memory)")
    ps.add_argument("--num-pages", type=int, default=None, help="KV pages of 16 tokens")
    ps.add_argument("--kv-memory", type=_memory, default=None,
                    help="memory the KV pool may take, e.g. 512M or 2G (default: 25%% of "
                    "the available memory, at most 4G, no more than the run holds)")
    ps.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: half the CPUs, at least 1)")
    ps.add_argument("--temperature", type=float, default=1.0,
                    help="sampling temperature (every method but greedy)")
    ps.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass")
    ps.add_argument("--top-k", type=int, default=0, help="sample among the k most likely "
                    "tokens (0: all)")
    ps.add_argument("--tree-html", default=None, help="write the first problem's tree here")
    ps.add_argument("--seed", type=int, default=0)
    ps.add_argument("--no-progress", action="store_true")
    ps.add_argument("--json", action="store_true", help="print JSON")
    ps.set_defaults(func=cmd_search)

    pt = sub.add_parser("train", help="train a policy: sft, rest (expert iteration), grpo, ppo or step-level dpo")
    pt.add_argument("--task", default="countdown", help="task name or FILE.jsonl")
    pt.add_argument("--algo", "--method", dest="algo", choices=TRAIN_ALGORITHMS, default="sft",
                    help="trainer (--method is the same option)")
    pt.add_argument("--out", required=True, help="checkpoint folder to write (new, empty, or "
                    "an earlier o1search checkpoint; checked before training starts)")
    pt.add_argument("--overwrite", action="store_true",
                    help="write into a folder that holds other files (they are kept), or over "
                    "the input checkpoint")
    pt.add_argument("--model", default=None, help="start from this checkpoint")
    pt.add_argument("--resume", action="store_true",
                    help="continue the ReST run in --out from its latest round (same options; "
                    "--rounds may grow)")
    pt.add_argument("--steps", type=int, default=200, help="SFT steps / GRPO batches")
    pt.add_argument("--rounds", type=int, default=1, help="ReST / DPO rounds")
    pt.add_argument("--problems", type=int, default=256, help="training problems")
    pt.add_argument("--samples", type=int, default=8, help="samples per problem")
    pt.add_argument("--batch-size", type=int, default=16, help="GRPO problems per batch")
    pt.add_argument("--lr", type=float, default=None, help="learning rate")
    pt.add_argument("--eval-problems", type=int, default=100, help="test problems (0: skip)")
    pt.add_argument("--question-field", default="question")
    pt.add_argument("--answer-field", default="answer")
    pt.add_argument("--solution-field", default=None, help="JSONL step-by-step solution field")
    pt.add_argument("--seed", type=int, default=0)
    pt.add_argument("--no-progress", action="store_true")
    pt.add_argument("--temperature", type=float, default=1.0,
                    help="sampling temperature of ReST's search and GRPO/PPO rollouts")
    pt.add_argument("--beta", type=float, default=None,
                    help="KL coefficient to the frozen reference (grpo, ppo, dpo; default: "
                         "0 / 0.05 / 0.1)")
    pt.add_argument("--report-to", choices=("none", "tensorboard", "wandb"), default="none",
                    help="also send the metric rows to TensorBoard or Weights & Biases "
                         "(their own libraries, when installed)")
    pt.add_argument("--logging-dir", default=None,
                    help="TensorBoard / W&B folder (default: beside --metrics-file)")
    pt.add_argument("--metrics-file", default=None,
                    help="JSONL of training metrics: a row per logged SFT step, ReST round, "
                         "GRPO step (outside --out)")
    pt.add_argument("--logging-steps", type=int, default=10,
                    help="SFT optimizer steps between metric rows")
    pt.add_argument("--gradient-accumulation-steps", type=int, default=1,
                    help="SFT micro-batches per optimizer step")
    pt.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                    help="weights, optimizer state and KV dtype (bfloat16/float16 halve memory)")
    pt.add_argument("--num-pages", type=int, default=None,
                    help="KV pages of the search engine (rest, grpo)")
    pt.add_argument("--kv-memory", type=_memory, default=None,
                    help="memory the search engine's KV pool may take, e.g. 2G")
    pt.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: half the CPUs, at least 1)")
    pt.set_defaults(func=cmd_train)

    pc = sub.add_parser("convert", help="a GGUF model file -> a transformers checkpoint folder")
    pc.add_argument("gguf", help="the .gguf file (weights, config and tokenizer)")
    pc.add_argument("--out", required=True, help="checkpoint folder to write")
    pc.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    pc.add_argument("--overwrite", action="store_true",
                    help="write into a folder of other files (they are kept)")
    pc.set_defaults(func=cmd_convert)

    pb = sub.add_parser("bench", help="run a script from benchmarks/ (source checkout)")
    pb.add_argument("name", nargs="?", default=None, help="benchmark name, or 'list'")
    pb.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    pb.set_defaults(func=cmd_bench)
    for name, sp in sub.choices.items():
        if name in ("demo", "search", "train"):
            sp.add_argument("--config", metavar="FILE", default=None,
                            help="JSON or YAML file of option values (keys: the long option "
                                 "names, with - or _); options on the command line win")
    p.o1_subcommands = dict(sub.choices)  # type: ignore[attr-defined]
    return p


def _config_of(argv: Sequence[str]) -> tuple[str, str] | None:
    """``(subcommand, FILE)`` when ``argv`` has ``--config FILE`` after a subcommand."""
    command = next((a for a in argv if not a.startswith("-")), None)
    for i, a in enumerate(argv):
        if a == "--config" and i + 1 < len(argv):
            return (command or "", argv[i + 1])
        if a.startswith("--config="):
            return (command or "", a.split("=", 1)[1])
    return None


def _apply_config(parser: argparse.ArgumentParser, command: str, file: str) -> None:
    """Make ``--config FILE``'s values the defaults of ``command`` (the command line wins)."""
    import json
    from pathlib import Path

    subs = parser.o1_subcommands  # type: ignore[attr-defined]
    if command not in subs or command not in ("demo", "search", "train"):
        raise UsageError("--config goes after one of the commands demo, search, train")
    path = Path(file).expanduser()
    if not path.is_file():
        raise UsageError(f"--config: no file at {str(path)!r}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise UsageError("--config: reading YAML needs PyYAML (pip install pyyaml); or "
                             "write the file as JSON") from None
        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UsageError(f"--config: {path} is not valid YAML ({_one_line(exc)})") from None
    else:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--config: {path} is not valid JSON ({exc.msg} at line "
                             f"{exc.lineno})") from None
    if not isinstance(values, dict):
        raise UsageError(f"--config: {path} must hold a mapping of option names to values")
    sp = subs[command]
    actions = {a.dest: a for a in sp._actions if a.dest not in ("help", "config")}
    defaults = {}
    for key, value in values.items():
        dest = str(key).lstrip("-").replace("-", "_")
        act = actions.get(dest)
        if act is None:
            raise UsageError(f"--config: unknown option {key!r} for '{command}'; "
                             f"known: {', '.join(sorted(actions))}")
        if act.nargs == 0:  # a flag
            if not isinstance(value, bool):
                raise UsageError(f"--config: {key!r} is a flag; give true or false")
        elif value is not None:
            if act.type is not None and isinstance(value, str):
                try:
                    value = act.type(value)
                except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
                    raise UsageError(f"--config: {key!r}: {_one_line(exc)}") from None
            if act.choices is not None and value not in act.choices:
                raise UsageError(f"--config: {key!r} must be one of "
                                 f"{', '.join(map(str, act.choices))}, got {value!r}")
        act.required = False  # given by the file
        defaults[dest] = value
    sp.set_defaults(**defaults)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``o1search`` console script.

    Parameters:
        argv: arguments (default ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success, 2 for a mistake the user can fix (one line on stderr,
        no traceback), 130 when interrupted.
    """
    try:
        parser = build_parser()
        argv = list(sys.argv[1:] if argv is None else argv)
        config = _config_of(argv)
        if config is not None:
            _apply_config(parser, *config)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        if getattr(args, "no_progress", False):
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # its weight-loading bar too
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"o1search: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
        # The library's messages say what to change; a traceback would bury them.
        print(f"o1search: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        from o1search import O1SearchError

        if isinstance(exc, O1SearchError) and not isinstance(exc, _internal_errors()):
            print(f"o1search: error: {_one_line(exc)}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("o1search: interrupted", file=sys.stderr)
        return 130


def _one_line(exc: BaseException) -> str:
    msg = str(exc) or type(exc).__name__
    # Library messages name keyword arguments; on the command line they are options.
    for kw in ("question_field", "answer_field", "solution_field"):
        msg = msg.replace(f"{kw}=", "--" + kw.replace("_", "-"))
    if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in msg:
        msg = f"{msg}: {exc.filename}"
    return " ".join(msg.split())


def _internal_errors() -> tuple[type, ...]:
    from o1search import InternalError

    return (InternalError,)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
