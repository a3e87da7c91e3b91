"""One error hierarchy: every error scrub raises on purpose is a :class:`ScrubError`.

Each subclass keeps the built-in parent a caller would have caught before (a bad hypothesis is
still a ``ValueError``), so ``except ValueError`` keeps working and ``except scrub.ScrubError``
catches everything scrub refuses. Messages name the node, argument or file at fault and say
what would be valid.
"""

from __future__ import annotations

__all__ = [
    "ScrubError",
    "HypothesisError",
    "GraphError",
    "FeatureError",
    "DatasetError",
    "MetricError",
    "RunOptionsError",
    "BaselineError",
    "UnsupportedModelError",
    "CheckpointError",
    "ExecutionError",
    "ReproductionError",
    "ClusterError",
]


class ScrubError(Exception):
    """Base class of every error scrub raises on purpose."""


class HypothesisError(ScrubError, ValueError):
    """A hypothesis that does not fit the model's graph or the data; the message names the node."""


class GraphError(HypothesisError):
    """A node or port that the model's graph does not have."""


class FeatureError(ScrubError, ValueError):
    """A feature that cannot be evaluated, or gives values of the wrong shape or type."""


class DatasetError(ScrubError, ValueError):
    """Tokens, labels, target positions, masks or columns that do not make a valid dataset."""


class MetricError(ScrubError, ValueError):
    """A metric that is unknown, or a custom metric that returns the wrong shape or type."""


class RunOptionsError(ScrubError, ValueError):
    """A run option (seed, seed count, batch size, device, bootstrap size...) that is not valid."""


class BaselineError(ScrubError, ValueError):
    """A baseline under which the fraction of loss recovered is undefined."""


class UnsupportedModelError(ScrubError, TypeError):
    """A model, or an architecture feature of it, that scrub cannot score exactly; the message names it."""


class CheckpointError(ScrubError, ValueError):
    """A weights file that is missing, unreadable or does not match its config."""


class ExecutionError(ScrubError, RuntimeError):
    """The forward pass did not go as planned (a hook did not fire, or fired with the wrong shape)."""


class ReproductionError(ScrubError, ValueError):
    """A run's record does not match the model, data or hypothesis given to reproduce it, or the rerun's score."""


class ClusterError(ScrubError, RuntimeError):
    """A Ray cluster (``ray=``) that cannot be reached, is not installed, or lost work it could not retry."""
