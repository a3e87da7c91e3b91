"""scrub: causal scrubbing for TransformerLens models.

Write a circuit hypothesis (an interpretation DAG mapped onto the model's graph), run it,
and read the fraction of loss it recovers with a confidence interval::

    h = scrub.Hypothesis("induction")
    ind = h.output().add("induction", model=["a1.1", "a1.3"], agree="label")
    result = scrub.run(model, h, data, seed=0)
"""

from importlib import metadata as _metadata

from scrub import internal as internal  # the plan, executor and oracle: scrub.internal
from scrub._ablation import Mean, Zero
from scrub._acdc import PeerResult, acdc
from scrub._alignment import AlignmentWarning, at_target
from scrub._architecture import Architecture, from_hf, supported_architectures
from scrub._attribution import edge_attribution
from scrub._breakdown import breakdown
from scrub._checkpoint import build_model, load_model, save_model
from scrub._controls import Cancellation, Controls, cancellation, controls, identifiability
from scrub._das import DASResult, das, interchange_accuracy, principal_cosines
from scrub._dataset import Dataset
from scrub._discover import Discovery, discover
from scrub._executor import ExecutionError
from scrub._experiment import ReproductionError, fully_scrubbed, reproduce, run, run_many
from scrub._graph import GraphError, ModelGraph
from scrub._hypothesis import Hypothesis, HypothesisError, Node
from scrub._metrics import MetricError
from scrub._options import RunOptions
from scrub._plan import Plan, make_plan
from scrub._result import Result
from scrub._sampling import Exact, FeatureError, Random
from scrub._serialize import from_json, to_json, to_python
from scrub._subspace import Subspace
from scrub.errors import (
    BaselineError,
    CheckpointError,
    ClusterError,
    DatasetError,
    RunOptionsError,
    ScrubError,
    UnsupportedModelError,
)
from scrub.report import write_html
from scrub.suite import Case, run_suite
from scrub.testing import assert_faithful

__all__ = [
    "Dataset", "ModelGraph", "Hypothesis", "Node", "Exact", "Random", "Subspace", "Mean", "Zero", "at_target", "AlignmentWarning", "run", "run_many", "RunOptions", "breakdown", "Case", "run_suite", "assert_faithful", "write_html", "reproduce", "Result", "Plan", "make_plan",
    "das", "DASResult", "interchange_accuracy", "principal_cosines",
    "controls", "Controls", "identifiability", "cancellation", "Cancellation",
    "discover", "Discovery", "acdc", "edge_attribution", "PeerResult", "to_python", "to_json", "from_json",
    "fully_scrubbed", "build_model", "load_model", "save_model", "from_hf", "Architecture", "supported_architectures",
    "HypothesisError", "GraphError", "FeatureError", "MetricError", "ExecutionError", "ReproductionError",
    "ScrubError", "DatasetError", "RunOptionsError", "BaselineError", "UnsupportedModelError", "CheckpointError",
    "ClusterError",
]
try:
    __version__: str = _metadata.version("scrub")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
