"""o1search.experiments (compare, presets, plots): method comparison at equal token budgets.

Oracles: the scripted toy policy (whose completions are judged here, token by token, against
the hidden target), hand-computed token counts and greedy outcomes, and for the real default
policy ``model.generate`` (through ``o1search.policy.evaluate_policy``)."""

from __future__ import annotations

import struct

import pytest

from o1search import experiments as ev
from o1search.search import BeamConfig, BestOfNConfig, MCTSConfig, SearchProblem
from o1search.testing.toy import EOS, ToyPolicy, ToyPRM, ToyVerifier

COMPLETION = 7  # toy: 3 action steps of (action, DELIM) + EOS


def _ids_text(ids):
    """Decoder that keeps every token id (EOS included), so the judge sees exact tokens."""
    return ",".join(str(int(t)) for t in ids)


class ToyTask:
    """Judges a decoded toy completion exactly: the target's step tokens, then EOS."""

    def __init__(self, policy: ToyPolicy) -> None:
        self.policy = policy

    def expected(self, problem) -> list[int]:
        out = []
        for a in problem.target:
            out += list(self.policy.step_tokens(a))
        return out + [EOS]

    def verify(self, problem, text: str) -> float:
        ids = [int(x) for x in text.split(",")] if text else []
        return 1.0 if ids == self.expected(problem) else 0.0

    def extract_answer(self, text: str):
        return text or None


def _hand_correct(policy: ToyPolicy, problem, completion) -> bool:
    toks = list(completion)
    return bool(toks) and toks[-1] == EOS and tuple(policy.actions(toks)) == problem.target


@pytest.fixture
def toy():
    policy = ToyPolicy(num_actions=3, horizon=3, p_target=0.3)
    return policy, ToyTask(policy), policy.problems(range(12), seed=5)


def _round_tokens(cfg: dict, algorithm: str) -> int:
    """Most tokens one round of a sized config can generate on the toy policy."""
    step = 2  # an action and its delimiter (EOS alone is shorter)
    if algorithm.startswith("best_of_n"):
        return (cfg["samples_per_round"] or cfg["n"]) * COMPLETION
    if algorithm in ("beam", "dvts", "lookahead"):
        per = cfg["num_subtrees"] * cfg["width"] * cfg["expansions_per_beam"]
        return per * step * (1 + cfg["lookahead"])
    per_child = step + (COMPLETION if cfg["value_source"] == "rollout" else 0)
    return cfg["leaves_per_round"] * cfg["num_children"] * per_child


# ------------------------------------------------------------------------ greedy
@pytest.mark.parametrize("p_target, expected", [(0.3, 0.0), (0.6, 1.0)])
def test_greedy_accuracy_toy_hand_values(p_target, expected):
    # The policy's mode is the target exactly when p_target beats the best other action
    # (weight 2/3 of the remaining mass): 0.3 < 0.47 never, 0.6 > 0.27 always.
    policy = ToyPolicy(num_actions=3, horizon=3, p_target=p_target)
    g = ev.greedy_accuracy(policy, ToyTask(policy), policy.problems(range(9)),
                           decoder=_ids_text)
    assert g.accuracy == expected
    assert g.mean_generated_tokens == COMPLETION
    assert len(g.correct) == 9


# ------------------------------------------------------------------------ run_method
def test_run_method_accuracy_is_a_hand_count(toy):
    policy, task, problems = toy
    for method, evaluator in [("best_of_n", ToyVerifier(policy)),
                              ("best_of_n_majority", None),
                              ("beam", ToyPRM(policy)), ("mcts", ToyPRM(policy)),
                              ("dvts", ToyPRM(policy))]:
        r = ev.run_method(method, policy, evaluator, task, problems, token_budget=56,
                          completion_tokens=COMPLETION, decoder=_ids_text)
        hand = [_hand_correct(policy, p.problem, res.completion)
                for p, res in zip(problems, r.results)]
        assert r.correct == hand, method
        assert r.accuracy == pytest.approx(sum(hand) / len(hand)), method
        assert r.mean_generated_tokens == pytest.approx(
            sum(x.compute.generated_tokens for x in r.results) / len(problems))


def test_best_of_n_with_verifier_is_pass_at_n(toy):
    # Reward-best selection with the exact verifier is correct iff any sample is.
    policy, task, problems = toy
    r = ev.run_method("best_of_n", policy, ToyVerifier(policy), task, problems,
                      token_budget=8 * COMPLETION, completion_tokens=COMPLETION,
                      decoder=_ids_text)
    assert r.config.n == 8 and r.config.select == "best"
    any_ok = [any(s >= 0.5 for s in res.info["scores"]) for res in r.results]
    assert r.correct == any_ok
    # 8 samples with per-sample success 0.3**3: some problems solved, most not.
    assert 0 < sum(r.correct) < len(problems)


def test_search_with_a_perfect_prm_beats_greedy(toy):
    policy, task, problems = toy
    r = ev.run_method("beam", policy, ToyPRM(policy), task, problems, token_budget=112,
                      completion_tokens=COMPLETION, decoder=_ids_text)
    assert r.accuracy > 0.5  # greedy is 0 on this policy


# ------------------------------------------------------------------------ compare_methods
def test_compare_methods_rows_and_budgets(toy, tmp_path):
    policy, task, problems = toy
    methods = ["greedy", "best_of_n", "best_of_n_majority", "beam", "dvts",
               ev.MethodSpec("mcts", "mcts-rollout", {"value_source": "rollout"})]
    budgets = [14, 28, 56]
    rows = ev.compare_methods(policy, ToyVerifier(policy), task, problems, methods, budgets,
                              decoder=_ids_text, progress=True)
    assert len(rows) == 1 + 5 * len(budgets)
    keys = {"method", "algorithm", "budget", "accuracy", "num_problems", "num_correct",
            "generated_tokens", "max_generated_tokens", "prefilled_tokens", "reused_tokens",
            "generator_calls", "wall_s", "config", "correct"}
    for r in rows:
        assert keys <= set(r)
        assert r["num_problems"] == len(problems)
        assert r["num_correct"] == sum(r["correct"])
        assert r["accuracy"] == pytest.approx(r["num_correct"] / len(problems))
        assert r["generator_calls"] >= 1
    assert [r["method"] for r in rows[:1]] == ["greedy"] and rows[0]["budget"] is None
    by = {(r["method"], r["budget"]): r for r in rows}
    assert set(by) == {("greedy", None)} | {(m, b) for m in ("best_of_n",
                                                             "best_of_n_majority", "beam",
                                                             "dvts", "mcts-rollout")
                                            for b in budgets}
    for (name, b), r in by.items():
        if b is None:
            continue
        # Stops before the round that would start past the budget: at most one round over.
        assert r["max_generated_tokens"] <= b + _round_tokens(r["config"], r["algorithm"]), \
            (name, b, r["max_generated_tokens"], r["config"])
        assert r["config"]["token_budget"] == b
    # Best-of-N draws budget // L whole completions of exactly L tokens each.
    for b in budgets:
        assert by[("best_of_n", b)]["generated_tokens"] == COMPLETION * (b // COMPLETION)
    # The plot of these rows.
    png = ev.plot_accuracy_vs_tokens(rows, tmp_path / "sub" / "acc.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24])
    assert w > 100 and h > 100
    import matplotlib.image

    assert matplotlib.image.imread(str(png)).shape[:2] == (h, w)
    curves = ev.rows_to_curves(rows)
    assert set(curves) == {"greedy", "best_of_n", "best_of_n_majority", "beam", "dvts",
                           "mcts-rollout"} and len(curves["beam"]) == 3


# ------------------------------------------------------------------------ configs, errors
def test_method_config_sizing():
    c = ev.method_config("best_of_n", 100, completion_tokens=10)
    assert isinstance(c, BestOfNConfig) and c.n == 10 and c.token_budget == 100
    assert ev.method_config("best_of_n", 100, completion_tokens=10,
                            has_evaluator=False).select == "majority"
    b = ev.method_config("beam", 160, completion_tokens=10)
    assert isinstance(b, BeamConfig) and (b.width, b.expansions_per_beam) == (4, 4)
    b = ev.method_config("beam", 20, completion_tokens=10)
    assert (b.width, b.expansions_per_beam) == (1, 2)
    d = ev.method_config("dvts", 160, completion_tokens=10)
    assert d.num_subtrees == 4 and d.width == 1
    m = ev.method_config("mcts", 120, completion_tokens=10, value_source="rollout")
    # children: round(3 * sqrt(12)) = 10; leaves: round(120 / (4 * 10 * 10)) -> at least 1.
    assert isinstance(m, MCTSConfig) and m.leaves_per_round == 1 and m.num_children == 10
    m = ev.method_config("mcts", 10, completion_tokens=10)
    assert m.num_children == 3 and m.leaves_per_round == 1
    assert ev.method_config("beam", 160, completion_tokens=10, width=7).width == 7
    # An exact verifier: greedy roll-outs, stop once verified, sequential widening expansions.
    m = ev.method_config("mcts", 160, completion_tokens=10, exact_verifier=True)
    assert (m.value_source, m.rollout_temperature, m.stop_at_reward, m.root_rollout) == \
        ("rollout", 0.0, 1.0, True)
    assert m.widening > 0 and (m.num_children, m.leaves_per_round) == (2, 1)
    assert m.token_budget == 160 and m.complete_answer
    assert ev.method_config("mcts", 160, completion_tokens=10).stop_at_reward is None


def test_errors(toy, tmp_path):
    policy, task, problems = toy
    with pytest.raises(ValueError, match="unknown method"):
        ev.method_config("nope", 10)
    with pytest.raises(ValueError, match="token_budget"):
        ev.method_config("beam", 0)
    with pytest.raises(ValueError, match="completion_tokens"):
        ev.method_config("beam", 10, completion_tokens=float("nan"))
    with pytest.raises(TypeError):
        ev.method_config("beam", 10, no_such_field=1)
    with pytest.raises(ValueError, match="needs an evaluator"):
        ev.run_method("beam", policy, None, task, problems, token_budget=20,
                      decoder=_ids_text)
    with pytest.raises(ValueError, match="budgets"):
        ev.compare_methods(policy, None, task, problems, ["greedy"], [0], decoder=_ids_text)
    with pytest.raises(ValueError, match="unknown method"):
        ev.MethodSpec("bogus")
    with pytest.raises(ValueError, match="distinct"):
        ev.compare_methods(policy, None, task, problems, ["greedy", "greedy"], [10],
                           decoder=_ids_text)
    with pytest.raises(ValueError, match="no rows"):
        ev.plot_accuracy_vs_tokens([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="tokenizer"):
        ev.prepare_problems(task, ["a problem"], None)
    with pytest.raises(ValueError, match="decoder"):
        ev.greedy_accuracy(ToyPolicyNoDecoder(), task, problems)
    with pytest.raises(TypeError, match="Engine or a Generator"):
        ev.greedy_accuracy(object(), task, problems, decoder=_ids_text)
    with pytest.raises(ValueError, match="unknown evaluator"):
        ev.make_evaluator("oracle", task)


class ToyPolicyNoDecoder:
    def __init__(self) -> None:
        self._p = ToyPolicy()

    def generate(self, requests):
        return self._p.generate(requests)


# ------------------------------------------------------------------------ real policy
def test_greedy_accuracy_matches_model_generate():
    from o1search.engine import Engine
    from o1search.policy import evaluate_policy, load_policy
    from o1search.tasks import CountdownTask

    model, tok = load_policy()
    task = CountdownTask(num_count=3, n_train=1600, n_test=200, seed=0, check_prob=0.1,
                         correction_prob=0.05)
    probs = task.problems("test")[:12]
    engine = Engine(model, tok, num_pages=512, page_size=16)
    g = ev.greedy_accuracy(engine, task, probs, max_new_tokens=96)
    ref = evaluate_policy(model, tok, task, probs, num_samples=1, do_sample=False,
                          max_new_tokens=96)
    assert g.texts == [row[0] for row in ref.completions]
    assert g.correct == [row[0] >= 0.5 for row in ref.rewards]
    assert g.accuracy == ref.accuracy
    sps = ev.prepare_problems(task, probs, tok)
    assert all(isinstance(p, SearchProblem) for p in sps)
    assert ev.prepare_problems(task, sps) == sps
