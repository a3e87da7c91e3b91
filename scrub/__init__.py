"""scrub: causal scrubbing for TransformerLens models."""
from scrub.dataset import Dataset
from scrub.checkpoint import build_model, load_model, save_model

__all__ = ["Dataset", "build_model", "load_model", "save_model"]
__version__ = "0.1.0"
