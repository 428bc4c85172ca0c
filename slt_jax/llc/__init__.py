"""The LLC estimation engine.

``estimate_llc`` runs localized chains at a batch of points (checkpoints ×
seeds) for any ``loss_fn(params, batch)``; ``compile_sweep`` compiles that
program once for many calls; ``calibrate`` scans step sizes. The engine never
imports the paper's domain: the caller passes the loss.
"""

from slt_jax.llc import config, diagnostics, export, influence, nuts
from slt_jax.llc.config import PAPER_SGLD, SETTLED_SGLD, SGLDConfig
from slt_jax.llc.engine import (
  CPU_CHAINS_PER_CHUNK,
  LLCResult,
  Observe,
  Sweep,
  calibrate,
  compile_sweep,
  estimate_llc,
  resolve_mask,
  resolve_settings,
)
from slt_jax.samplers.sgld import SGLDSettings

__all__ = [
  "config",
  "diagnostics",
  "export",
  "influence",
  "nuts",
  "CPU_CHAINS_PER_CHUNK",
  "PAPER_SGLD",
  "SETTLED_SGLD",
  "LLCResult",
  "Observe",
  "SGLDConfig",
  "SGLDSettings",
  "Sweep",
  "calibrate",
  "compile_sweep",
  "estimate_llc",
  "resolve_mask",
  "resolve_settings",
]
