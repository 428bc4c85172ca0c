"""The paper's domain: modular arithmetic, the quadratic network, training.

``config`` (data, model and training configs), ``data``, ``model``,
``losses``, ``train`` (vmapped training), ``runs`` (the run store),
``grokking_metrics`` (curve metrics such as the GSM) and ``plotting``.
"""

from slt_jax.grokking import (
  config,
  data,
  grokking_metrics,
  losses,
  model,
  runs,
  train,
)

__all__ = [
  "config",
  "data",
  "grokking_metrics",
  "losses",
  "model",
  "runs",
  "train",
]
