"""The command line (o1search.cli) and the demo pipeline (o1search.experiments.demo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import o1search
from o1search.cli import main
from o1search.experiments import DemoConfig, SearchRunConfig, TrainRunConfig, make_algorithm, run_demo

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code, err, *needles):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, no traceback
    assert lines[0].startswith("o1search: error: ")
    for n in needles:
        assert n in lines[0], lines[0]


# ------------------------------------------------------------------------------- info
def test_info_still_works(capsys):
    code, out, _ = run_cli(capsys, "info")
    assert code == 0 and "native core (o1search._core): built" in out
    code, out, _ = run_cli(capsys, "info", "--json")
    info = json.loads(out)
    assert code == 0 and info["native_core"] is True and "torch" in info["kernel_backends"]


def test_no_command_prints_help(capsys):
    code, out, _ = run_cli(capsys)
    assert code == 2 and "demo" in out and "search" in out


# ------------------------------------------------------------------------------- errors
def test_unknown_algorithm(capsys):
    code, _, err = run_cli(capsys, "search", "--algo", "alphazero")
    assert_usage_error(code, err, "alphazero", "mcts")


def test_missing_model_path(capsys, tmp_path):
    code, _, err = run_cli(capsys, "search", "--model", str(tmp_path / "nope"))
    assert_usage_error(code, err, str(tmp_path / "nope"))
    code, _, err = run_cli(capsys, "train", "--model", str(tmp_path / "nope"),
                           "--out", str(tmp_path / "o"))
    assert_usage_error(code, err, "nope")


def test_unknown_jsonl_field(capsys, tmp_path):
    f = tmp_path / "data.jsonl"
    f.write_text('{"q": "1+1", "a": "2"}\n{"q": "2+2", "a": "4"}\n')
    code, _, err = run_cli(capsys, "search", "--task", str(f), "--no-progress")
    assert_usage_error(code, err, "question")
    # With the right field names the same file is accepted (and searched).
    code, out, err = run_cli(capsys, "search", "--task", str(f), "--question-field", "q",
                             "--answer-field", "a", "--algo", "greedy", "--problems", "1",
                             "--split", "train", "--no-progress", "--json")
    assert code == 0, err
    assert json.loads(out)["problems"][0]["reference"] in ("2", "4")


def test_unknown_task_and_missing_task_file(capsys, tmp_path):
    code, _, err = run_cli(capsys, "search", "--task", "sudoku", "--no-progress")
    assert_usage_error(code, err, "sudoku", "countdown")
    code, _, err = run_cli(capsys, "search", "--task", str(tmp_path / "x.jsonl"))
    assert_usage_error(code, err, "x.jsonl")


def test_budget_too_small(capsys):
    code, _, err = run_cli(capsys, "search", "--algo", "mcts", "--budget", "5")
    assert_usage_error(code, err, "budget 5", "too small")
    code, _, err = run_cli(capsys, "demo", "--budgets", "8,64")
    assert_usage_error(code, err, "too small")
    code, _, err = run_cli(capsys, "demo", "--budgets", "a,b")
    assert_usage_error(code, err, "comma-separated")
    code, _, err = run_cli(capsys, "demo", "--methods", "mcts,alphago")
    assert_usage_error(code, err, "alphago")


def test_bad_train_requests(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--algo", "ppo2", "--out", str(tmp_path))
    assert_usage_error(code, err, "ppo2")
    code, _, err = run_cli(capsys, "train")
    assert_usage_error(code, err, "--out")
    f = tmp_path / "d.jsonl"
    f.write_text('{"question": "1+1", "answer": "2"}\n' * 4)
    code, _, err = run_cli(capsys, "train", "--task", str(f), "--algo", "sft", "--out",
                           str(tmp_path / "ck"), "--eval-problems", "0", "--no-progress")
    assert_usage_error(code, err, "no solution traces", "--solution-field")


def test_bench(capsys):
    code, out, _ = run_cli(capsys, "bench", "list")
    assert code == 0 and "bench_reward" in out
    code, _, err = run_cli(capsys, "bench", "no_such_bench")
    assert_usage_error(code, err, "no_such_bench", "bench_reward")


def test_error_in_a_fresh_process_has_no_traceback():
    # The same o1search this test session imported (installed, or the checkout on PYTHONPATH),
    # run from a neutral directory so a checkout's o1search/ cannot shadow an installed one.
    env = {**os.environ, "PYTHONPATH": str(Path(o1search.__file__).resolve().parent.parent)}
    p = subprocess.run([sys.executable, "-m", "o1search", "search", "--model", "/no/such/dir"],
                       capture_output=True, text=True, env=env, timeout=120, cwd=tempfile.gettempdir())
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [
        "o1search: error: no policy checkpoint at '/no/such/dir'"]


def test_config_validation():
    with pytest.raises(ValueError, match="too small"):
        DemoConfig(budgets=(16,))
    with pytest.raises(ValueError, match="unknown method"):
        DemoConfig(methods=("beam", "nope"))
    with pytest.raises(ValueError, match="not both"):
        DemoConfig(policy="/x", retrain_policy=True)
    with pytest.raises(ValueError, match="unknown algorithm"):
        SearchRunConfig(algo="x")
    with pytest.raises(ValueError, match="--out"):
        TrainRunConfig()
    with pytest.raises(ValueError, match="unknown algorithm"):
        make_algorithm("x", 64)


def test_algorithms_scale_with_budget():
    small, big = make_algorithm("best_of_n", 64), make_algorithm("best_of_n", 512)
    assert small.config.n < big.config.n and big.config.token_budget == 512
    for name in ("beam", "mcts", "dvts"):
        assert make_algorithm(name, 128).config.token_budget == 128
    assert make_algorithm("greedy", None).config.sampling.temperature == 0.0


# ------------------------------------------------------------------------------- search
def test_search_greedy_matches_transformers_generate(capsys):
    """Greedy through the engine and the search loop gives what ``model.generate`` gives."""
    from o1search.policy import generate_completions, load_policy
    from o1search.experiments.task_setup import load_task as _load_task
    from o1search.policy import default_policy_path

    code, out, err = run_cli(capsys, "search", "--algo", "greedy", "--problems", "6",
                             "--no-progress", "--json")
    assert code == 0, err
    got = json.loads(out)
    model, tok = load_policy()
    task = _load_task("countdown", default_policy_path())
    probs = task.problems("test")[:6]
    want = generate_completions(model, tok, [task.prompt(p) for p in probs], max_new_tokens=96)
    assert [p["text"] for p in got["problems"]] == [w[0] for w in want]
    for p, prob in zip(got["problems"], probs):
        assert p["id"] == prob.id
        assert p["correct"] == (task.verify(prob, p["text"]) >= 1.0)
        if p["correct"]:
            assert p["answer"] == prob.answer
    assert got["summary"]["accuracy"] == sum(p["correct"] for p in got["problems"]) / 6


def test_search_text_output_and_tree(capsys, tmp_path):
    f = tmp_path / "tree.html"
    code, out, err = run_cli(capsys, "search", "--algo", "mcts", "--budget", "64",
                             "--problems", "2", "--no-progress", "--tree-html", str(f))
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith(("ok ", "FAIL")) and "countdown-test-00000" in lines[0]
    assert lines[2].startswith("mcts: ") and "correct" in lines[2]
    page = f.read_text()
    assert 'class="node root chosen' in page and "evaluator" not in page


# ------------------------------------------------------------------------------- demo
@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    config = DemoConfig(out=str(out), prm_problems=6, prm_samples=2, prm_rollouts=1,
                        prm_epochs=1.0, eval_problems=4, budgets=(64,), rest_problems=6,
                        rest_samples=2, rest_sft_steps=2, rest_eval_problems=6,
                        progress=False)
    return run_demo(config, echo=None), out


def test_demo_writes_its_outputs(tiny_demo):
    res, out = tiny_demo
    names = {p.name for p in out.iterdir()}
    assert {"report.json", "accuracy_vs_tokens.png", "learning_curves.png", "tree.html",
            "prm", "policy_after_rest"} <= names
    for png in ("accuracy_vs_tokens.png", "learning_curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "report.json").read_text())
    assert report == json.loads(json.dumps(res.report))
    assert {"config", "policy", "prm", "comparison", "rest", "files", "timings_s",
            "total_s", "machine"} <= set(report)
    rows = report["comparison"]
    assert [(r["method"], r["budget"]) for r in rows] == [
        ("greedy", None), ("best_of_n", 64), ("beam", 64), ("mcts", 64), ("dvts", 64)]
    for r in rows:
        assert 0.0 <= r["accuracy"] <= 1.0 and r["problems"] == 4
        assert r["mean_generated_tokens"] > 0
        # A problem stops before a round that would start past the budget, so it can
        # overshoot by at most one round (here <= 4 leaves x 2 children x 30 tokens).
        if r["budget"]:
            assert r["max_generated_tokens"] <= r["budget"] + 240
    assert report["policy"]["source"] == "shipped"
    assert report["prm"]["solutions"] == 12 and report["prm"]["labelled_steps"] > 0
    for method in ("greedy", "best_of_n", "beam", "mcts", "dvts"):
        assert method in res.table


def test_demo_report_describes_exactly_the_files_beside_it(tiny_demo):
    from o1search.checkpoint import MARKER_FILE, output_state

    res, out = tiny_demo
    report = json.loads((out / "report.json").read_text())
    listed = {Path(p) for p in report["files"].values()}
    assert all(p.exists() and p.parent == out for p in listed)
    assert {p.name for p in listed} | {MARKER_FILE} == {p.name for p in out.iterdir()}
    assert report["prm"]["path"] == str(out / "prm") and output_state(out) == "ours"


def test_demo_accuracies_match_an_independent_greedy_evaluation(tiny_demo):
    """Greedy accuracy in the comparison and before ReST equal ``model.generate`` greedy."""
    from o1search.experiments.task_setup import load_task as _load_task
    from o1search.policy import default_policy_path, evaluate_policy, load_policy

    res, _ = tiny_demo
    model, tok = load_policy()
    task = _load_task("countdown", default_policy_path())
    test = task.problems("test")
    g4 = evaluate_policy(model, tok, task, test[:4], max_new_tokens=96).accuracy
    g6 = evaluate_policy(model, tok, task, test[:6], max_new_tokens=96).accuracy
    assert res.report["comparison"][0]["accuracy"] == pytest.approx(g4)
    assert res.report["rest"]["greedy_accuracy_before"] == pytest.approx(g6)
    after = res.report["rest"]["greedy_accuracy_after"]
    trained, _ = load_policy(res.files["report"].parent / "policy_after_rest")
    assert after == pytest.approx(
        evaluate_policy(trained, tok, task, test[:6], max_new_tokens=96).accuracy)


def test_demo_tree_viewer_shows_the_chosen_path(tiny_demo):
    from test_viz import parse

    _, out = tiny_demo
    page = (out / "tree.html").read_text()
    p = parse(page)
    chosen = sorted(n for n, v in p.nodes.items() if "chosen" in v["classes"])
    assert chosen and chosen[0] == 0  # the path starts at the root
    # The chosen nodes form one root-to-node chain in the page's nesting.
    for n in chosen[1:]:
        assert p.nodes[n]["parent"] in chosen
    assert "search answer" in page and "https:" not in page


# ------------------------------------------------------------------ search on user data
def test_search_takes_a_task_file_whole_in_order_and_writes_lines(capsys, tmp_path):
    """A 12-row file and --problems 4 searches rows 1-4 (not a test split); --out has one
    JSON line per problem, and --json's accuracy is the share of correct lines."""
    f = tmp_path / "words.jsonl"
    f.write_text("".join(json.dumps({"question": f"1+{i}", "answer": str(1 + i)}) + "\n"
                         for i in range(12)))
    res = tmp_path / "res.jsonl"
    code, out, err = run_cli(capsys, "search", "--task", str(f), "--algo", "greedy",
                             "--problems", "4", "--out", str(res), "--no-progress", "--json")
    assert code == 0, err
    assert "KV pool" in err and "torch threads" in err  # resources said once, on stderr
    got = json.loads(out)
    lines = [json.loads(x) for x in res.read_text().splitlines()]
    assert [x["id"] for x in lines] == [f"words-{i}" for i in range(1, 5)]
    assert [x["question"] for x in lines] == [f"1+{i}" for i in range(4)]
    assert lines == got["problems"]
    assert got["summary"]["accuracy"] == sum(x["correct"] for x in lines) / 4
    assert got["summary"]["problems"] == 4
    # Without --problems the whole file; an existing --out is kept unless --overwrite.
    code, _, err = run_cli(capsys, "search", "--task", str(f), "--algo", "greedy",
                           "--out", str(res), "--no-progress")
    assert_usage_error(code, err, "exists", "--overwrite")
    assert len(res.read_text().splitlines()) == 4
    code, _, err = run_cli(capsys, "search", "--task", str(f), "--algo", "greedy",
                           "--out", str(res), "--overwrite", "--no-progress", "--batch", "5")
    assert code == 0, err
    assert len(res.read_text().splitlines()) == 12
    # A split only when asked for: the 10/2 seeded split of the file.
    code, out, err = run_cli(capsys, "search", "--task", str(f), "--algo", "greedy",
                             "--split", "test", "--no-progress", "--json")
    assert code == 0 and json.loads(out)["summary"]["problems"] == 1


def test_search_resource_options(capsys, tmp_path):
    code, _, err = run_cli(capsys, "search", "--kv-memory", "lots", "--no-progress")
    assert_usage_error(code, err, "memory size")
    code, _, err = run_cli(capsys, "search", "--algo", "greedy", "--problems", "1",
                           "--kv-memory", "1K", "--no-progress")
    assert_usage_error(code, err, "holds no page")
    code, _, err = run_cli(capsys, "search", "--algo", "greedy", "--problems", "1",
                           "--num-pages", "64", "--threads", "1", "--no-progress", "--json")
    assert code == 0, err
    assert "KV pool 64 pages x 16 tokens" in err and "torch threads 1" in err


def test_resource_plan_sizes_the_pool_from_bytes_per_token():
    from types import SimpleNamespace

    from o1search.experiments.resources import kv_bytes_per_token, parse_memory, plan_resources

    cfg = SimpleNamespace(num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                          hidden_size=576)  # SmolLM2-135M: head_dim 64
    assert kv_bytes_per_token(cfg, 4) == 2 * 30 * 3 * 64 * 4 == 46080
    plan = plan_resources(cfg, dtype_bytes=2, need_tokens=10**9, kv_memory=1 << 30,
                          threads=3)
    assert plan.num_pages == (1 << 30) // (23040 * 16) and plan.threads == 3
    small = plan_resources(cfg, dtype_bytes=4, need_tokens=1000, kv_memory=1 << 30)
    assert small.num_pages == 64 and "capped" in small.why  # ceil(1000/16) + 1
    assert parse_memory("512M") == 512 << 20 and parse_memory("1.5GiB") == 3 << 29
    with pytest.raises(ValueError):
        parse_memory("-1G")


def test_convert_refuses_what_is_not_a_gguf_file(capsys, tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04 not gguf")
    code, _, err = run_cli(capsys, "convert", str(bad), "--out", str(tmp_path / "m"))
    assert_usage_error(code, err, "not a GGUF file")
    code, _, err = run_cli(capsys, "convert", str(tmp_path / "none.gguf"), "--out",
                           str(tmp_path / "m"))
    assert_usage_error(code, err, "no GGUF file")
    assert not (tmp_path / "m").exists()


def test_version_defaults_and_why_a_fail_failed(capsys):
    import o1search

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip().startswith("o1search ")
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    helptext = capsys.readouterr().out
    assert "(default: 256)" in helptext and "rg:DATASET" in helptext and "(default: None)" \
        not in helptext
    code, out, err = run_cli(capsys, "search", "--algo", "mcts", "--budget", "64",
                             "--problems", "3", "--no-progress")
    assert code == 0, err
    fails = [ln for ln in out.splitlines() if ln.startswith("FAIL")]
    assert fails and all(": " in ln.split("tokens)", 1)[1] for ln in fails), fails
    assert o1search.__version__


def test_search_sampling_flags_reach_the_algorithm(capsys):
    from o1search.experiments import make_algorithm

    algo = make_algorithm("best_of_n", 128, temperature=0.5, top_p=0.9, top_k=7)
    s = algo.config.sampling
    assert (s.temperature, s.top_p, s.top_k) == (0.5, 0.9, 7)
    assert make_algorithm("greedy", None, temperature=0.5).config.sampling.temperature == 0.0
    code, _, err = run_cli(capsys, "search", "--algo", "best_of_n", "--top-p", "0",
                           "--no-progress")
    assert_usage_error(code, err, "top_p")
    code, out, err = run_cli(capsys, "search", "--algo", "best_of_n", "--budget", "64",
                             "--problems", "2", "--temperature", "0.5", "--top-k", "5",
                             "--no-progress", "--json")
    assert code == 0, err
    cfg = json.loads(out)["config"]
    assert (cfg["temperature"], cfg["top_k"]) == (0.5, 5)


def test_train_in_bfloat16_writes_bfloat16_weights_that_changed(capsys, tmp_path):
    import torch

    from o1search.policy import default_policy_path, load_policy

    out = tmp_path / "ck"
    code, _, err = run_cli(capsys, "train", "--algo", "sft", "--model",
                           str(default_policy_path()), "--steps", "3", "--problems", "16",
                           "--eval-problems", "0", "--dtype", "bfloat16", "--no-progress",
                           "--out", str(out))
    assert code == 0, err
    from safetensors.torch import load_file

    from o1search.outputs import resolve_latest

    saved = {}
    for f in Path(resolve_latest(out)).glob("*.safetensors"):
        saved.update(load_file(f))
    assert saved and all(t.dtype == torch.bfloat16 for t in saved.values())  # as written
    trained, _ = load_policy(out, dtype=torch.bfloat16)
    before, _ = load_policy(default_policy_path())
    params = dict(trained.named_parameters())
    changed = sum(not torch.equal(params[n].float(), p.to(torch.bfloat16).float())
                  for n, p in before.named_parameters())
    assert changed > 0  # the optimizer moved bf16 weights (no fp32 copy held them back)


def test_search_hard_budget_caps_every_problem(capsys, tmp_path):
    import json

    out = tmp_path / "r.jsonl"
    code, _, err = run_cli(capsys, "search", "--algo", "mcts", "--budget", "40",
                           "--problems", "6", "--hard-budget", "--no-progress",
                           "--out", str(out))
    assert code == 0, err
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 6 and all(x["generated_tokens"] <= 40 for x in lines)


def test_config_file_sets_options_and_the_command_line_wins(capsys, tmp_path):
    import json

    cfg = tmp_path / "search.yaml"
    cfg.write_text("algo: beam\nbudget: 48\nproblems: 2\nno-progress: true\n")
    code, out, err = run_cli(capsys, "search", "--config", str(cfg), "--json")
    assert code == 0, err
    got = json.loads(out)["config"]
    assert (got["algo"], got["budget"], got["problems"]) == ("beam", 48, 2)
    code, out, err = run_cli(capsys, "search", "--config", str(cfg), "--budget", "64", "--json")
    assert code == 0 and json.loads(out)["config"]["budget"] == 64
    # A required option may come from the file; bad files say what is wrong in one line.
    tj = tmp_path / "train.json"
    tj.write_text(json.dumps({"out": str(tmp_path / "ck"), "steps": 1, "problems": 4,
                              "eval_problems": 0, "no_progress": True}))
    code, _, err = run_cli(capsys, "train", "--config", str(tj))
    assert code == 0 and (tmp_path / "ck" / "config.json").is_file(), err
    for text, needle in [('{"bugdet": 3}', "unknown option 'bugdet'"),
                         ('{"algo": "nope"}', "must be one of"),
                         ('{"json": "yes"}', "is a flag"),
                         ('[1, 2]', "mapping"), ('{"algo": ', "not valid JSON")]:
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        code, _, err = run_cli(capsys, "search", "--config", str(bad))
        assert_usage_error(code, err, needle)
    code, _, err = run_cli(capsys, "search", "--config", str(tmp_path / "none.json"))
    assert_usage_error(code, err, "no file")


def test_per_method_size_flags_reach_the_algorithm(capsys):
    import json

    code, out, err = run_cli(capsys, "search", "--algo", "best_of_n", "--num-samples", "3",
                             "--budget", "400", "--problems", "2", "--no-progress", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["algorithm_config"]["n"] == 3
    code, out, err = run_cli(capsys, "search", "--algo", "mcts", "--num-simulations", "2",
                             "--num-children", "2", "--budget", "400", "--problems", "2",
                             "--no-progress", "--json")
    assert code == 0, err
    cfg = json.loads(out)["algorithm_config"]
    assert (cfg["num_simulations"], cfg["num_children"]) == (2, 2)
    code, _, err = run_cli(capsys, "search", "--algo", "mcts", "--beam-width", "2")
    assert_usage_error(code, err, "--beam-width applies to beam and dvts")
    code, _, err = run_cli(capsys, "search", "--algo", "beam", "--beam-width", "0")
    assert_usage_error(code, err, "--beam-width must be an integer >= 1")


def test_search_defaults_are_the_benchmarked_configuration(capsys):
    """`o1search search` runs what bench_search measured (exact-verifier MCTS: widening,
    stop at a verified answer); `--preset cli` keeps the older budget-derived sizing."""
    import json

    from o1search.experiments.presets import method_config

    code, out, err = run_cli(capsys, "search", "--budget", "128", "--problems", "2",
                             "--no-progress", "--json")
    assert code == 0, err
    got = json.loads(out)["algorithm_config"]
    want = method_config("mcts", 128, completion_tokens=32.0, exact_verifier=True,
                         max_completion_tokens=96)
    assert (got["widening"], got["stop_at_reward"], got["num_children"]) == (
        want.widening, want.stop_at_reward, want.num_children)
    code, out, err = run_cli(capsys, "search", "--budget", "128", "--problems", "2",
                             "--preset", "cli", "--no-progress", "--json")
    assert code == 0, err
    assert json.loads(out)["algorithm_config"]["widening"] == 0


def test_train_writes_a_metrics_file_row_by_row(capsys, tmp_path):
    import json

    mf = tmp_path / "logs" / "metrics.jsonl"
    code, _, err = run_cli(capsys, "train", "--algo", "sft", "--steps", "6", "--problems", "16",
                           "--eval-problems", "4", "--logging-steps", "2",
                           "--gradient-accumulation-steps", "2", "--metrics-file", str(mf),
                           "--no-progress", "--out", str(tmp_path / "ck"))
    assert code == 0, err
    rows = [json.loads(x) for x in mf.read_text().splitlines()]
    steps = [r for r in rows if r.get("phase") == "sft" and "loss" in r]
    assert [r["step"] for r in steps] == [2, 4, 6]  # every --logging-steps optimizer steps
    assert all(r["loss"] > 0 and "lr" in r for r in steps)
    assert rows[-1]["event"] == "end" and "greedy_accuracy_after" in rows[-1]
    # An existing file is not replaced without --overwrite; the metrics never go inside --out.
    code, _, err = run_cli(capsys, "train", "--algo", "sft", "--metrics-file", str(mf),
                           "--out", str(tmp_path / "ck2"))
    assert_usage_error(code, err, "exists")
    code, _, err = run_cli(capsys, "train", "--algo", "sft", "--metrics-file",
                           str(tmp_path / "ck3" / "m.jsonl"), "--out", str(tmp_path / "ck3"))
    assert_usage_error(code, err, "inside --out")


def test_train_ppo_and_grpo_change_the_weights_with_their_flags(capsys, tmp_path):
    import json

    import torch

    from o1search.policy import default_policy_path, load_policy

    before, _ = load_policy(default_policy_path())
    for algo, extra in (("ppo", ["--beta", "0.1"]), ("grpo", ["--beta", "0.02"])):
        mf = tmp_path / f"{algo}.jsonl"
        code, _, err = run_cli(capsys, "train", "--algo", algo, "--steps", "2", "--problems",
                               "8", "--samples", "2", "--batch-size", "2", "--eval-problems",
                               "0", "--temperature", "0.8", "--metrics-file", str(mf),
                               "--no-progress", "--out", str(tmp_path / algo), *extra)
        assert code == 0, err
        rows = [json.loads(x) for x in mf.read_text().splitlines()]
        assert [r["step"] for r in rows if r.get("phase") == algo] == [1, 2]
        after, _ = load_policy(tmp_path / algo)
        moved = sum(not torch.equal(a, b) for a, b in zip(after.parameters(),
                                                           before.parameters()))
        assert moved > 0, algo
    code, _, err = run_cli(capsys, "train", "--algo", "sft", "--beta", "0.1", "--out",
                           str(tmp_path / "x"))
    assert_usage_error(code, err, "--beta")


def test_train_dpo_learns_from_search_tree_pairs(capsys, tmp_path):
    import json

    import torch

    from o1search.policy import default_policy_path, load_policy

    mf = tmp_path / "dpo.jsonl"
    code, _, err = run_cli(capsys, "train", "--algo", "dpo", "--problems", "6", "--samples", "8",
                           "--eval-problems", "0", "--metrics-file", str(mf), "--no-progress",
                           "--out", str(tmp_path / "dpo"))
    assert code == 0, err
    (row,) = [json.loads(x) for x in mf.read_text().splitlines() if '"dpo"' in x]
    assert row["pairs"] > 0 and row["dpo_steps"] > 0
    before, _ = load_policy(default_policy_path())
    after, _ = load_policy(tmp_path / "dpo")
    assert any(not torch.equal(a, b) for a, b in zip(after.parameters(), before.parameters()))


def test_train_reports_to_tensorboard_through_its_library(capsys, tmp_path, monkeypatch):
    import sys

    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = tmp_path / "tb"
    code, _, err = run_cli(capsys, "train", "--algo", "sft", "--steps", "4", "--problems", "8",
                           "--eval-problems", "0", "--logging-steps", "2", "--report-to",
                           "tensorboard", "--logging-dir", str(logs), "--no-progress",
                           "--out", str(tmp_path / "ck"))
    assert code == 0, err
    acc = EventAccumulator(str(logs))
    acc.Reload()
    assert "sft/loss" in acc.Tags()["scalars"]
    assert [e.step for e in acc.Scalars("sft/loss")] == [2, 4]
    # Without the library: one line saying what to install.
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    code, _, err = run_cli(capsys, "train", "--algo", "sft", "--steps", "1", "--report-to",
                           "tensorboard", "--eval-problems", "0", "--out", str(tmp_path / "c2"))
    assert_usage_error(code, err, "pip install tensorboard")


def test_tree_problem_picks_whose_tree_the_viewer_shows(capsys, tmp_path):
    f = tmp_path / "t.html"
    code, _, err = run_cli(capsys, "search", "--algo", "mcts", "--budget", "64", "--problems",
                           "3", "--no-progress", "--tree-html", str(f), "--tree-problem", "2")
    assert code == 0, err
    page = f.read_text()
    assert "countdown-test-00002" in page and "countdown-test-00000" not in page
    code, _, err = run_cli(capsys, "search", "--algo", "mcts", "--budget", "64", "--problems",
                           "3", "--no-progress", "--tree-html", str(tmp_path / "u.html"),
                           "--tree-problem", "countdown-test-00001")
    assert code == 0 and "countdown-test-00001" in (tmp_path / "u.html").read_text()
    code, _, err = run_cli(capsys, "search", "--algo", "mcts", "--budget", "64", "--problems",
                           "2", "--no-progress", "--tree-html", str(tmp_path / "v.html"),
                           "--tree-problem", "nope")
    assert_usage_error(code, err, "--tree-problem 'nope'")
