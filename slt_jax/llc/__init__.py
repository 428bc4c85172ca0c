"""The LLC estimation engine.

``estimate_llc`` runs localized chains at a batch of points (checkpoints ×
seeds) for any ``loss_fn(params, batch)``; ``compile_sweep`` compiles that
program once for many calls; ``calibrate`` scans step sizes. The engine never
imports the paper's domain: the caller passes the loss.

Modules: ``arguments`` (argument checks), ``registry`` (the samplers by
name), ``chain`` (the chain program), ``sweep`` (``Sweep``: compile, shard,
chunk, resume), ``summary`` (estimates and warnings), ``estimate``,
``calibration``, ``result`` (``LLCResult``), ``config``, ``diagnostics``,
``export``, ``influence``, ``nuts``, ``masks`` (masks by parameter name),
``flax_models`` (a Flax model as ``(params, apply)``).
"""

from slt_jax.llc import (
  config,
  diagnostics,
  export,
  flax_models,
  influence,
  masks,
  nuts,
)
from slt_jax.llc.arguments import (
  ObservablesSpec,
  resolve_mask,
  resolve_settings,
)
from slt_jax.llc.autotune import AutotuneReport, autotune
from slt_jax.llc.calibration import calibrate
from slt_jax.llc.config import PAPER_SGLD, SETTLED_SGLD, SGLDConfig
from slt_jax.llc.estimate import estimate_llc
from slt_jax.llc.flax_models import split_linen, split_nnx
from slt_jax.llc.masks import mask_from_paths, param_paths
from slt_jax.llc.result import LLCResult
from slt_jax.llc.sweep import CPU_CHAINS_PER_CHUNK, Sweep, compile_sweep
from slt_jax.samplers.sgld import SGLDSettings

# The spec of the recorded observables, under its former name.
Observe = ObservablesSpec

__all__ = [
  "config",
  "diagnostics",
  "export",
  "flax_models",
  "influence",
  "masks",
  "nuts",
  "AutotuneReport",
  "CPU_CHAINS_PER_CHUNK",
  "PAPER_SGLD",
  "SETTLED_SGLD",
  "LLCResult",
  "Observe",
  "SGLDConfig",
  "SGLDSettings",
  "Sweep",
  "autotune",
  "calibrate",
  "compile_sweep",
  "estimate_llc",
  "mask_from_paths",
  "param_paths",
  "resolve_mask",
  "resolve_settings",
  "split_linen",
  "split_nnx",
]
