"""The engine's internals, for tests, benchmarks and the curious: not needed to score a hypothesis.

- :func:`make_plan` / :class:`Plan` / :class:`Instance`: a hypothesis treeified into instances,
  with every instance's examples sampled up front;
- :func:`run_plan` / :func:`run_clean`: the batched executor, and the model's own logits;
- :func:`run_reference`: the slow recursive oracle the executor is tested against.

These may change between versions without notice; the public API is what ``scrub`` exports.
"""

from scrub._executor import n_blocks, run_clean, run_plan
from scrub._plan import Instance, Plan, make_plan
from scrub._reference import run_reference

__all__ = ["Plan", "Instance", "make_plan", "run_plan", "run_clean", "run_reference", "n_blocks"]
