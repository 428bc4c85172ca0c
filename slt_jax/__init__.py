"""slt_jax: local learning coefficients with batched localized SGLD in JAX.

Packages, whose boundaries are the architecture:

- ``samplers``: one module per sampler (``sgld`` with RMSprop-SGLD, ``sghmc``
  with SGNHT, ``mala``), ``noise`` and ``tree`` utilities. Imports nothing of
  the engine or the domain.
- ``llc``: the estimation engine (``estimate_llc``, ``compile_sweep``,
  ``calibrate``), its config, diagnostics, influence and susceptibility,
  export to xarray/ArviZ and the NUTS reference. Never imports the domain:
  the caller passes ``loss_fn``.
- ``theory``: closed forms, float64 curvature, stochastic Lanczos quadrature.
- ``training``: the vmapped, resumable trainer of any model (``train_models``
  with a ``Task``: init, loss, metrics): seeds × hyperparameter grids in one
  program, early stopping, chunked resume. Imports nothing of the domain.
- ``grokking``: the paper's domain: ``data``, ``model``, ``losses``,
  ``train``, the run store ``runs``, ``grokking_metrics``, ``plotting``.

Shared: ``checks`` (argument rules), ``persist`` (atomic files, fingerprints,
resumable parts), ``batching``, ``distributed``, ``tree_types``, and
``known_cases`` (models with exact coefficients). The domain's main modules
are also attributes of the top package: ``sj.data``, ``sj.model``,
``sj.losses``, ``sj.train`` and ``sj.runs``.
"""

from slt_jax import (
  batching,
  checks,
  distributed,
  grokking,
  known_cases,
  llc,
  persist,
  samplers,
  theory,
  training,
)
from slt_jax.grokking import data, losses, model, runs, train
from slt_jax.grokking.config import DataConfig, ModelConfig, TrainConfig
from slt_jax.llc.config import SGLDConfig

__all__ = [
  "batching",
  "checks",
  "distributed",
  "grokking",
  "known_cases",
  "llc",
  "persist",
  "samplers",
  "theory",
  "training",
  "data",
  "losses",
  "model",
  "runs",
  "train",
  "DataConfig",
  "ModelConfig",
  "SGLDConfig",
  "TrainConfig",
]
