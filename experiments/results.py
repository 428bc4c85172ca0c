"""What an experiment writes: its configs as dicts, the environment it ran
in, and ``results.json``.

Every experiment writes ``DIR/results.json`` (``write_results``): its config
and numbers, with ``environment()`` added, written atomically.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from typing import Any

import jax

from slt_jax import persist


def config_dict(*configs: Any) -> dict:
  """Frozen config dataclasses as ``{ClassName: {field: value}}``.

  >>> from slt_jax.grokking.config import DataConfig
  >>> config_dict(DataConfig(p=7))["DataConfig"]["p"]
  7
  """
  return {type(c).__name__: dataclasses.asdict(c) for c in configs}


def cpu_info() -> dict:
  """The CPU model, its SIMD flags (from /proc/cpuinfo where it exists), the
  core count and XLA_FLAGS: what the speed ratios were measured on.

  >>> sorted(cpu_info())
  ['cpu_count', 'model', 'simd_flags', 'xla_flags']
  """
  model_name, flags = None, []
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model_name is None:
          model_name = value.strip()
        elif key.strip() == "flags" and not flags:
          flags = value.split()
  except OSError:
    pass
  model_name = model_name or platform.processor() or None
  simd = sorted(f for f in flags if f.startswith(("avx", "sse", "fma", "amx")))
  return {
    "model": model_name,
    "simd_flags": simd,
    "cpu_count": os.cpu_count(),
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }


def environment() -> dict:
  """Where a result was produced: versions, backend, devices and the CPU."""
  return {
    "jax": jax.__version__,
    "backend": jax.default_backend(),
    "devices": [str(d) for d in jax.devices()],
    "python": platform.python_version(),
    "machine": platform.machine(),
    "cpu_count": os.cpu_count(),
    "cpu": cpu_info(),
  }


def write_results(
  out_dir: str, payload: dict, name: str = "results.json"
) -> str:
  """Atomically writes ``payload`` plus ``environment()`` as JSON.

  Args:
    out_dir: output folder.
    payload: JSON-able dict (arrays become lists, NaN becomes null).
    name: file name.

  Returns:
    The path written.
  """
  path = os.path.join(out_dir, name)
  persist.save_json(path, {**payload, "environment": environment()})
  return path
