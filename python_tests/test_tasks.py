"""Tasks: seeded disjoint splits, gold traces that verify, corrupted traces that fail,
reasoning behaviours accepted, JSONL errors that say what is wrong."""

from __future__ import annotations

import re
import itertools
import json
import random
from fractions import Fraction

import pytest

from o1search.reward import ExactMatchVerifier
from o1search.tasks import (
    ArithmeticTask,
    CountdownTask,
    JsonlTask,
    Problem,
    TraceError,
    available_tasks,
    get_task,
    parse_trace,
)


def _reachable(nums: tuple[int, ...], target: int) -> bool:
    """Independent brute force: can ``target`` be made from ``nums`` (each at most once)
    with + - * / over non-negative integers and exact division?"""
    if target in nums:
        return True
    for i, j in itertools.permutations(range(len(nums)), 2):
        a, b = Fraction(nums[i]), Fraction(nums[j])
        rest = tuple(n for k, n in enumerate(nums) if k not in (i, j))
        outs = [a + b, a * b] + ([a - b] if a >= b else []) + ([a / b] if b and a % b == 0 else [])
        if any(_reachable(rest + (int(c),), target) for c in outs):
            return True
    return False


def _sample(problems, k=60):
    return problems[:: max(1, len(problems) // k)]


# ------------------------------------------------------------------------- splits
@pytest.mark.parametrize(
    "make",
    [
        lambda seed: CountdownTask(n_train=300, n_test=50, seed=seed),
        lambda seed: CountdownTask(num_count=4, n_train=100, n_test=30, seed=seed),
        lambda seed: ArithmeticTask(op="mixed", n_train=300, n_test=50, seed=seed),
    ],
)
def test_splits_are_seeded_deterministic_and_disjoint(make):
    a, b, other = make(1), make(1), make(2)
    assert a.train == b.train and a.test == b.test
    assert a.train != other.train
    assert len(a.train) == a.n_train and len(a.test) == a.n_test
    train_q = {p.question for p in a.train}
    assert len(train_q) == len(a.train)
    assert not train_q & {p.question for p in a.test}
    assert len({p.id for p in a.train + a.test}) == len(a.train) + len(a.test)
    with pytest.raises(ValueError, match="unknown split"):
        a.problems("validation")


def test_countdown_problems_are_solvable_and_match_the_knobs():
    task = CountdownTask(num_count=3, min_number=2, max_number=9, max_value=60, n_train=200,
                         n_test=20, seed=3)
    for p in task.train + task.test:
        nums, target = p.metadata["nums"], p.metadata["target"]
        assert len(nums) == 3 and all(2 <= n <= 9 for n in nums)
        assert 10 <= target <= 60 and target not in nums
        assert p.question == f"nums {' '.join(map(str, nums))} target {target}"
        assert p.answer == str(target) and p.solution[-1] == f"answer {target}"
        for step in p.solution[:-1]:
            lhs, value = step.split("=")
            assert int(value) <= 60
    for p in _sample(task.train, 40):
        assert _reachable(p.metadata["nums"], p.metadata["target"])


def test_countdown_impossible_sizes_raise():
    with pytest.raises(ValueError, match="distinct Countdown problems"):
        CountdownTask(num_count=2, max_number=3, n_train=500, n_test=0).train
    with pytest.raises(ValueError, match="num_count"):
        CountdownTask(num_count=9)
    with pytest.raises(ValueError, match="probability"):
        CountdownTask(check_prob=1.5)


# ------------------------------------------------------------------------- countdown
def _cd(nums, target):
    return Problem("hand", f"nums {' '.join(map(str, nums))} target {target}", str(target),
                   metadata={"nums": tuple(nums), "target": target})


CD = CountdownTask(n_train=200, n_test=20)
P60 = _cd((3, 7, 8, 4), 60)

# Hand-checked traces for nums 3 7 8 4, target 60.
GOOD_60 = [
    "7*8=56\n56+4=60\nanswer 60\n",
    "7*8=56\ncheck 7*8=56 ok\n56+4=60\ncheck 56+4=60 ok\nanswer 60\n",
    "7*8=54\nwait 7*8=56 not 54\n56+4=60\nanswer 60\n",
    "7*8 = 56\n56 + 4 = 60\nanswer 60",  # spaces and no final newline are fine
]
BAD_60 = {
    "7*8=56\n56+4=61\nanswer 60\n": "not corrected",
    "7*8=56\n56+4=60\nanswer 61\n": "not the target",
    "7*8=56\n56+4=60\n": "no answer",
    "7*9=63\n63-3=60\nanswer 60\n": "not available",  # 9 is not given
    "7*8=56\n56+4=60\n60-4=56\n56+4=60\nanswer 60\n": "not available",  # 4 used twice
    "7*8=56\n56/3=18\nanswer 60\n": "not an exact division",
    "3-7=0\nanswer 60\n": "not corrected",  # 3-7 is -4; negative values cannot be stated
    "3-4=1\nanswer 60\n": "not corrected",  # 3-4 is -1, stated 1
    "7*8=56\ncheck 7*8=57 ok\n56+4=60\nanswer 60\n": "restate",
    "7*8=54\ncheck 7*8=54 ok\nanswer 60\n": "wrong step",
    "7*8=56\nwait 7*8=56 not 56\n56+4=60\nanswer 60\n": "was right",
    "7*8=54\nwait 7*8=55 not 54\nanswer 60\n": "wrong too",
    "7*8=54\nwait 7*8=56 not 53\nanswer 60\n": "must follow",
    "7+8+3=18\nanswer 60\n": "one operation",
    "let me think\nanswer 60\n": "cannot read",
    "answer 60\n": "do not reach",
    "7*8=56\n56+4=60\n60-3=57\nanswer 60\n": "do not reach",
    "": "no answer",
}


@pytest.mark.parametrize("trace", GOOD_60)
def test_countdown_accepts_hand_checked_traces(trace):
    r = CD.evaluate(P60, trace)
    assert r.correct and r.reward == 1.0 and r.predicted == "60", r
    assert CD.verify(P60, trace) == 1.0


@pytest.mark.parametrize("trace,why", BAD_60.items())
def test_countdown_rejects_corrupted_traces(trace, why):
    r = CD.evaluate(P60, trace)
    assert not r.correct and r.reward == 0.0
    assert why in r.reason, r.reason


def test_countdown_numbers_made_by_steps_become_available():
    p = _cd((2, 3, 5), 25)
    assert CD.verify(p, "2+3=5\n5*5=25\nanswer 25\n") == 1.0  # the given 5 and the made 5
    assert CD.verify(p, "2+3=5\n5*5=25\n25-5=20\n20+5=25\nanswer 25\n") == 0.0  # three 5s


def test_countdown_text_after_the_answer_is_ignored():
    assert CD.verify(P60, "7*8=56\n56+4=60\nanswer 60\ngarbage\n") == 1.0


def test_countdown_gold_traces_verify_and_corruptions_fail():
    rng = random.Random(0)
    for p in _sample(CD.train):
        gold = CD.format_completion(p.solution)
        assert CD.demonstration(p) == gold
        assert CD.verify(p, gold) == 1.0, (p, gold)
        assert CD.prompt(p) == p.question + "\n"
        assert CD.extract_answer(gold) == p.answer
        # Corrupt one step's value, drop the last operation, or change the answer.
        steps = list(p.solution)
        k = rng.randrange(len(steps) - 1)
        lhs, value = steps[k].split("=")
        wrong = steps[:k] + [f"{lhs}={int(value) + 1}"] + steps[k + 1 :]
        assert CD.verify(p, CD.format_completion(wrong)) == 0.0
        # Without its last operation the trace ends short of the target.
        assert CD.verify(p, CD.format_completion(steps[:-2] + steps[-1:])) == 0.0
        off_by_one = steps[:-1] + [f"answer {int(p.answer) + 1}"]
        assert CD.verify(p, CD.format_completion(off_by_one)) == 0.0


def test_countdown_demonstrations_with_behaviours_verify():
    task = CountdownTask(n_train=200, n_test=10, check_prob=0.5, correction_prob=0.5)
    seen_check = seen_wait = 0
    for i, p in enumerate(_sample(task.train, 100)):
        demo = task.demonstration(p, i)
        seen_check += "check " in demo
        seen_wait += "wait " in demo
        assert task.verify(p, demo) == 1.0, demo
        assert set(task.prompt(p) + demo) <= set(task.alphabet())
        # The demonstration's wrong steps really are wrong: dropping their corrections fails.
        if "wait " in demo:
            stripped = "".join(ln for ln in demo.splitlines(True) if not ln.startswith("wait"))
            assert task.verify(p, stripped) == 0.0
    assert seen_check > 10 and seen_wait > 10
    # Seeded: the same rng seed gives the same demonstration.
    p = task.train[0]
    assert task.demonstration(p, 5) == task.demonstration(p, 5)


def test_task_verifier_adapter():
    v = CD.verifier()
    assert v(P60, GOOD_60[0]).correct
    with pytest.raises(TypeError, match="Problem"):
        v("60", GOOD_60[0])
    with pytest.raises(TypeError):
        CD.evaluate(P60, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a Countdown problem"):
        CD.evaluate(Problem("x", "q", "1"), "answer 1")


# ------------------------------------------------------------------------- arithmetic
AR = ArithmeticTask(op="mixed", n_train=300, n_test=30)


def _ar(op, a, b):
    return Problem("hand", f"{op} {a} {b}", str(a + b if op == "add" else a * b),
                   metadata={"op": op, "a": a, "b": b})


def test_arithmetic_hand_computed_traces():
    p = _ar("add", 478, 256)
    gold = "8+6+0=14\n7+5+1=13\n4+2+1=7\nanswer 734\n"
    assert AR.verify(p, gold) == 1.0
    assert AR.verify(p, "8+6+0=14\n7+5+1=13\n4+2+1=7\nanswer 733\n") == 0.0
    assert AR.verify(p, "8+6+0=14\n7+5+0=12\n4+2+1=7\nanswer 734\n") == 0.0  # lost carry
    assert AR.verify(p, "answer 734\n") == 0.0  # steps are required...
    assert ArithmeticTask(check_steps=False).verify(p, "answer 734\n") == 1.0  # ...unless off
    assert AR.verify(p, "8+6+0=14\n7+5+1=13\n4+2+1=7\n0+0+0=0\nanswer 734\n") == 0.0
    assert AR.verify(p, "8+6+0=15\nwait 8+6+0=14 not 15\n7+5+1=13\ncheck 7+5+1=13 ok\n"
                        "4+2+1=7\nanswer 734\n") == 1.0
    p = _ar("add", 95, 7)
    assert AR.verify(p, "5+7+0=12\n9+0+1=10\nanswer 102\n") == 1.0
    p = _ar("mul", 478, 6)
    assert AR.verify(p, "8*6+0=48\n7*6+4=46\n4*6+4=28\nanswer 2868\n") == 1.0
    assert AR.verify(p, "8*6+0=48\n7*6+4=46\n4*6+4=28\nanswer 2869\n") == 0.0


def test_arithmetic_problems_gold_traces_and_corruptions():
    ops = set()
    for p in _sample(AR.train + AR.test, 80):
        op, a, b = p.metadata["op"], p.metadata["a"], p.metadata["b"]
        ops.add(op)
        assert p.answer == str(a + b if op == "add" else a * b)  # Python is the oracle
        assert 2 <= len(str(a)) <= 4
        gold = AR.format_completion(p.solution)
        assert AR.verify(p, gold) == 1.0
        # Break one column's value: caught even though the final answer line is right.
        steps = list(p.solution)
        lhs, value = steps[0].split("=")
        assert AR.verify(p, AR.format_completion([f"{lhs}={int(value) + 1}"] + steps[1:])) == 0.0
    assert ops == {"add", "mul"}


def test_arithmetic_demonstrations_with_behaviours_verify():
    task = ArithmeticTask(op="mixed", n_train=100, n_test=10, check_prob=0.4,
                          correction_prob=0.4)
    for i, p in enumerate(task.train):
        demo = task.demonstration(p, i)
        assert task.verify(p, demo) == 1.0, demo
        assert set(task.prompt(p) + demo) <= set(task.alphabet())


# ------------------------------------------------------------------------- trace grammar
def test_parse_trace_resolves_corrections():
    steps, answer = parse_trace("1+2=4\nwait 1+2=3 not 4\ncheck 1+2=3 ok\n3*3=9\nanswer 9\nx")
    assert [(s.lhs, s.value) for s in steps] == [("1+2", 3), ("3*3", 9)]
    assert answer == "9"
    with pytest.raises(TraceError, match="not corrected"):
        parse_trace("1+2=4\n3*3=9\n")
    with pytest.raises(TraceError, match="too long"):
        parse_trace("1" * 40 + "*2=3\n")


# ------------------------------------------------------------------------- JSONL
def _write(tmp_path, lines, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_jsonl_task_loads_splits_and_verifies(tmp_path):
    rows = [json.dumps({"question": f"What is {i}/{i + 1}?", "answer": f"\\frac{{{i}}}{{{i + 1}}}"})
            for i in range(1, 21)]
    rows.insert(5, "")  # blank lines are skipped
    path = _write(tmp_path, rows)
    task = JsonlTask(path, test_fraction=0.25, seed=7)
    assert len(task) == 20 and len(task.test) == 5 and len(task.train) == 15
    assert not {p.id for p in task.train} & {p.id for p in task.test}
    again = JsonlTask(path, test_fraction=0.25, seed=7)
    assert again.test == task.test
    assert JsonlTask(path, test_fraction=0.25, seed=8).test != task.test
    p = next(q for q in task.train + task.test if q.question == "What is 1/2?")
    assert task.prompt(p) == "What is 1/2?\n"
    assert task.verify(p, "so it is \\boxed{0.5}") == 1.0
    assert task.verify(p, "answer 0.25") == 0.0
    assert task.extract_answer("x\nanswer 0.5") == "0.5"
    assert get_task(str(path), test_fraction=0.25, seed=7).test == task.test


def test_jsonl_fields_solution_template_and_verifier(tmp_path):
    path = _write(tmp_path, [
        json.dumps({"q": "capital of France", "a": "Paris", "steps": ["think", "answer Paris"],
                    "uid": "x1"}),
        json.dumps({"q": "2+2", "a": 4, "steps": "2+2=4\nanswer 4", "uid": "x2"}),
    ])
    task = JsonlTask(path, question_field="q", answer_field="a", solution_field="steps",
                     id_field="uid", prompt_template="Q: {q}\nA:", verifier=ExactMatchVerifier(),
                     test_fraction=0.5)
    problems = {p.id: p for p in task.train + task.test}
    assert problems["x2"].answer == "4"  # numbers become text
    assert problems["x2"].solution == ("2+2=4", "answer 4")
    assert problems["x1"].solution == ("think", "answer Paris")
    assert task.prompt(problems["x1"]) == "Q: capital of France\nA:"
    assert task.verify(problems["x1"], "answer: Paris") == 1.0
    assert task.verify(problems["x1"], "answer: paris") == 0.0


def test_jsonl_errors_say_what_and_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        JsonlTask(tmp_path / "missing.jsonl")
    bad_json = _write(tmp_path, ['{"question": "a", "answer": "1"}', '{"question": "b", '],
                      "bad.jsonl")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: invalid JSON"):
        JsonlTask(bad_json)
    missing = _write(
        tmp_path,
        ['{"question": "a", "answer": "1"}', '{"problem": "b", "solution": "2"}'],
        "missing.jsonl",
    )
    with pytest.raises(ValueError) as info:
        JsonlTask(missing)
    msg = str(info.value)
    assert "missing.jsonl:2" in msg and "'question'" in msg
    assert "'problem', 'solution'" in msg and "question_field=" in msg
    with pytest.raises(ValueError, match=r":1: missing field 'answer'.*answer_field="):
        JsonlTask(_write(tmp_path, ['{"question": "a"}'], "noanswer.jsonl"))
    with pytest.raises(ValueError, match="expected a JSON object, got list"):
        JsonlTask(_write(tmp_path, ["[1, 2]"], "list.jsonl"))
    with pytest.raises(ValueError, match="no problems"):
        JsonlTask(_write(tmp_path, ["", "  "], "empty.jsonl"))
    with pytest.raises(ValueError, match="duplicate id"):
        JsonlTask(_write(tmp_path, ['{"question": "a", "answer": 1, "id": 1}'] * 2, "dup.jsonl"),
                  id_field="id")
    with pytest.raises(ValueError, match="must be a string"):
        JsonlTask(_write(tmp_path, ['{"question": 5, "answer": 1}'], "num.jsonl"))
    with pytest.raises(ValueError, match="test_fraction"):
        JsonlTask(bad_json, test_fraction=2.0)


# ------------------------------------------------------------------------- registry
def test_registry():
    assert {"countdown", "arithmetic"} <= set(available_tasks())
    t = get_task("countdown", num_count=4, n_train=20, n_test=5)
    assert isinstance(t, CountdownTask) and t.num_count == 4
    assert all(len(p.metadata["nums"]) == 4 for p in t.train)
    assert isinstance(get_task("arithmetic", op="mul"), ArithmeticTask)
    with pytest.raises(ValueError, match="unknown task 'chess'.*countdown"):
        get_task("chess")
    with pytest.raises(FileNotFoundError):
        get_task("nope.jsonl")
    with pytest.raises(TypeError):
        get_task("countdown", colour="red")


def test_broad_countdown_problems_exclude_the_test_split_and_repeat_nothing():
    from o1search.tasks.countdown import broad_problems, problem_key

    task = CountdownTask(n_train=300, n_test=100, seed=0)
    pool = broad_problems(task, "15:400,25:600", seed=3)
    keys = [problem_key(p) for p in pool]
    assert len(keys) == len(set(keys))
    assert not set(keys) & {problem_key(p) for p in task.problems("test")}
    assert [p.id for p in pool[:300]] == [p.id for p in task.problems("train")]
    assert max(max(p.metadata["nums"]) for p in pool) > 15
    assert all(max(p.metadata["nums"]) <= 25 for p in pool)
    # The same spec as pairs, and a fixed seed, give the same problems.
    again = broad_problems(task, [(15, 400), (25, 600)], seed=3)
    assert [problem_key(p) for p in again] == keys
    only = broad_problems(task, "", include_train=False)
    assert only == []
    for bad in ("15", "15:x", "0:10"):
        with pytest.raises(ValueError, match="spec|max_number"):
            broad_problems(task, bad)


def test_arithmetic_for_a_chat_model_reads_the_stated_answer():
    from o1search.tasks import get_task

    task = get_task("arithmetic", check_steps=False)
    p = next(q for q in task.problems("test") if q.metadata["op"] == "add")
    a, b = p.metadata["a"], p.metadata["b"]
    assert task.chat_prompt(p) == (f"What is {a} plus {b}? Work it out step by step, then end "
                                   'with a last line of the form "The answer is N".')
    words = f"First add the units, then the tens.\nThe answer is {a + b}."
    assert task.verify(p, words) == 1.0
    assert task.verify(p, f"The answer is {a + b + 1}.") == 0.0
    assert task.verify(p, f"The answer is {a + b} or {a + b + 1}.") == 0.0  # a hedge
    assert task.verify(p, f"\\boxed{{{a + b}}}") == 1.0
    assert task.verify(p, "I am not sure.") == 0.0
    assert task.extract_answer(words) == str(a + b)
    assert task.extract_answer("The answer is 3 or 4.") is None
    # The character policy's own trace is still read as before, and with check_steps the
    # stated answer alone earns nothing (a policy cannot skip the steps).
    assert task.verify(p, task.demonstration(p, 0)) == 1.0
    strict = get_task("arithmetic")
    q = strict.problems("test")[0]
    r = q.metadata["a"] + q.metadata["b"] if q.metadata["op"] == "add" else \
        q.metadata["a"] * q.metadata["b"]
    assert strict.verify(q, f"The answer is {r}.") == 0.0


def test_countdown_for_a_chat_model_judges_the_stated_expression():
    from o1search.tasks import CountdownTask

    task = CountdownTask(num_count=3, n_train=0, n_test=20, seed=1, expression_answers=True)
    p = task.problems("test")[0]
    nums, target = p.metadata["nums"], p.metadata["target"]
    assert f"make {target}" in task.chat_prompt(p) and "each at most once" in task.chat_prompt(p)
    # Build a true expression from the gold trace (a op b = c steps) by substitution.
    expr = {}
    for line in task.demonstration(p, 0).splitlines():
        if "=" in line and not line.startswith("answer"):
            lhs, val = line.split("=")
            a, op, b = re.match(r"(\d+)([-+*/])(\d+)", lhs).groups()
            expr[val] = f"({expr.pop(a, a)}{op}{expr.pop(b, b)})"
    (e,) = [v for k, v in expr.items() if k == str(target)]
    assert task.verify(p, f"Let me think.\nThe answer is {e}.") == 1.0
    assert task.extract_answer(f"The answer is {e}") == str(target)
    assert task.verify(p, f"The answer is {e}+1.") == 0.0  # wrong value (and a 1 not given)
    assert task.verify(p, f"The answer is {e} or {e}*1") == 0.0  # a hedge
    assert task.verify(p, f"The answer is {target}.") == 0.0 or target in nums  # no steps
    assert task.verify(p, "The answer is __import__('os').system('true')") == 0.0
    assert task.verify(p, "The answer is " + "(" * 60 + "1" + ")" * 60) == 0.0
    assert task.verify(p, task.demonstration(p, 0)) == 1.0  # the trace format still works
    # Off by default: the character policy cannot skip its steps.
    plain = CountdownTask(num_count=3, n_train=0, n_test=20, seed=1)
    assert plain.verify(plain.problems("test")[0], f"The answer is {e}.") == 0.0
