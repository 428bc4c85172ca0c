"""slt_jax: local learning coefficients with batched localized SGLD in JAX.

Modules: ``data`` (modular arithmetic), ``model`` (quadratic network),
``losses``, ``train`` (vmapped training), ``metrics`` (grokking metrics),
``sgld`` and ``mala`` (samplers), ``llc`` (the LLC engine), ``diagnostics``,
``theory`` (closed forms), ``plotting``.
"""

from slt_jax import (batching, config, data, diagnostics, io, known_cases, llc,
                     losses, mala, metrics, model, sgld, theory, train)
from slt_jax.config import DataConfig, ModelConfig, SGLDConfig, TrainConfig

__all__ = [
    "batching", "config", "data", "diagnostics", "io", "known_cases", "llc",
    "losses", "mala", "metrics", "model", "sgld", "theory", "train",
    "DataConfig", "ModelConfig", "SGLDConfig", "TrainConfig",
]
