"""The README's tour of the Python API: load a policy, run MCTS guided by a PRM, run a ReST round."""
import torch

from o1search.engine import Engine
from o1search.learn import LoopConfig, SearchLearnLoop
from o1search.policy import load_policy
from o1search.reward import ProcessRewardModel
from o1search.search import EngineGenerator, MCTSConfig, VerifierEvaluator, mcts, problems_from_task
from o1search.tasks import get_task

torch.set_num_threads(1)
model, tok = load_policy()                      # the shipped char-level Llama (or load_policy("path/to/qwen2"))
task = get_task("countdown", n_train=200, n_test=50)
engine = Engine(model, tok, num_pages=4096, page_size=16)     # paged KV + native radix prefix cache
gen = EngineGenerator(engine, tok, step_delimiter="\n", final_prefix="answer")
prm = ProcessRewardModel(load_policy()[0], tok)  # a PRM head on a policy-sized backbone (train it with train_prm)
problems = problems_from_task(task, task.test[:8], tok)
results = mcts(problems, gen, prm, MCTSConfig(num_simulations=16, token_budget=2000))
for p, r in zip(problems[:3], results):
    print(repr(r.text), task.verify(p.problem, r.text), r.compute.generated_tokens, r.compute.reused_tokens)
loop = SearchLearnLoop(model, tok, task, task.train[:64], LoopConfig(method="rest", rounds=1), eval_problems=task.test[:32])
print(loop.run())                               # search -> keep verified -> SFT; the engine gets the new weights
