"""Published models, when their weights are on this machine: GPT-2 small with the IOI circuit
(:mod:`~hypotheses.published.gpt2_ioi`) and Redwood's ``redwood_attn_2l`` with their induction
hypotheses (:mod:`~hypotheses.published.attn_2l`).

Nothing is ever downloaded. Each loader reads a local copy (``path=``, then an environment
variable, then the Hugging Face cache) and raises :class:`WeightsUnavailable` (a
``FileNotFoundError``) whose message names the repository, the files and the variable to set.
The suite (:mod:`~hypotheses.published.suite`) skips its cases with that message. Its expected
ranges come from the literature and were not measured here.
"""

from __future__ import annotations

from hypotheses.published.local import LocalWeights, WeightsUnavailable, hub_cache

__all__ = ["WeightsUnavailable", "LocalWeights", "hub_cache"]
