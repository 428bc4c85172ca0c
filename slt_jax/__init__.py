"""slt_jax: local learning coefficients with batched localized SGLD in JAX.

Modules: ``data`` (modular arithmetic), ``model`` (quadratic network),
``losses``, ``train`` (vmapped training), ``metrics`` (grokking metrics),
``sgld``, ``mala`` and ``sghmc`` (samplers; SGNHT is in ``sghmc``),
``normals`` (cheap counter-based noise), ``llc``
(the LLC engine), ``diagnostics``, ``reference`` (NUTS ground truth),
``influence`` (BIF, susceptibility) and ``export`` (xarray / ArviZ),
``distributed`` (every device of every process),
``theory`` (closed forms, float64 curvature, SLQ), ``validation`` (models with
known coefficients, as LLC test cases), ``plotting``. Each module lists its
public names in ``__all__``; README.md ("Public API") tabulates the main ones.
"""

from slt_jax import (
  batching,
  config,
  data,
  diagnostics,
  distributed,
  export,
  influence,
  io,
  llc,
  losses,
  mala,
  metrics,
  model,
  normals,
  reference,
  runs,
  sghmc,
  sgld,
  theory,
  train,
  validation,
)
from slt_jax.config import DataConfig, ModelConfig, SGLDConfig, TrainConfig

__all__ = [
  "batching",
  "config",
  "data",
  "diagnostics",
  "distributed",
  "export",
  "influence",
  "io",
  "llc",
  "losses",
  "mala",
  "metrics",
  "model",
  "normals",
  "reference",
  "runs",
  "sghmc",
  "sgld",
  "theory",
  "train",
  "validation",
  "DataConfig",
  "ModelConfig",
  "SGLDConfig",
  "TrainConfig",
]
