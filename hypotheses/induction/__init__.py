"""Induction demo: a 2-layer attention-only transformer trained on repeated segments.

``load_model()`` returns the committed trained model (``WEIGHTS``), ``make_data(n, seed)``
evaluation examples whose answer is fixed by induction, and ``locate_heads(model)`` the
previous-token and induction heads found from attention patterns. Retrain with
``python -m hypotheses.induction.train``.
"""

from __future__ import annotations

from pathlib import Path

import scrub
from hypotheses.induction.data import CONFIG, make_data
from hypotheses.induction.heads import head_scores, locate_heads

__all__ = ["CONFIG", "WEIGHTS", "load_model", "make_data", "locate_heads", "head_scores"]

#: The committed trained weights (written by ``python -m hypotheses.induction.train``).
WEIGHTS: Path = Path(__file__).with_name("model.safetensors")


def load_model():
    """The trained induction model from :data:`WEIGHTS` (a ``TransformerBridge`` in eval mode)."""
    model = scrub.load_model(WEIGHTS)
    model.eval()
    return model
