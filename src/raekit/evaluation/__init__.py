"""Evaluation as in the paper's Table 1: feature networks (``fid``: the TF-FID Inception;
``domain``: a small digit classifier), the Fréchet distance (``frechet``), precision and recall
(``prd``), the evaluation of a run (``evaluate``) and the table beside the published numbers
(``table``)."""

from .evaluate import EvalSettings, evaluate_run, load_metrics
from .table import write_table

__all__ = ["EvalSettings", "evaluate_run", "load_metrics", "write_table"]
