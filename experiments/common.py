"""Helpers shared by the experiment scripts: arguments, output folder, JSON.

Every experiment is ``python -m experiments.NAME [--quick] [--out DIR]
[--seed N] ...`` and writes ``figures/NAME/`` (or ``DIR``) with a
``results.json`` of its config and numbers next to its figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
from typing import Any, Callable, Optional, Sequence

import jax

from slt_jax import io

FIGURES_DIR = "figures"


def parse_args(description: str,
               extra: Optional[Callable[[argparse.ArgumentParser], None]] = None,
               argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  """Parses the common flags plus an experiment's own.

  Args:
    description: help text (usually the module docstring).
    extra: called with the parser to add the experiment's flags.
    argv: arguments (default: ``sys.argv[1:]``).

  Returns:
    Namespace with ``quick`` (bool), ``out`` (str or None), ``seed`` (int)
    and the extra flags.
  """
  parser = argparse.ArgumentParser(
      description=description,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true",
                      help="small configuration that finishes in minutes")
  parser.add_argument("--out", default=None,
                      help="output folder (default figures/NAME/)")
  parser.add_argument("--seed", type=int, default=0,
                      help="root PRNG seed (default 0)")
  if extra is not None:
    extra(parser)
  return parser.parse_args(argv)


def output_dir(name: str, out: Optional[str] = None) -> str:
  """Creates and returns the output folder: ``out`` or ``figures/NAME/``."""
  path = out if out else os.path.join(FIGURES_DIR, name)
  os.makedirs(path, exist_ok=True)
  return path


def config_dict(*configs: Any) -> dict:
  """Frozen config dataclasses as ``{ClassName: {field: value}}``."""
  return {type(c).__name__: dataclasses.asdict(c) for c in configs}


def environment() -> dict:
  """Where a result was produced: versions, backend and devices."""
  return {"jax": jax.__version__, "backend": jax.default_backend(),
          "devices": [str(d) for d in jax.devices()],
          "python": platform.python_version(), "machine": platform.machine(),
          "cpu_count": os.cpu_count()}


def write_results(out_dir: str, payload: dict,
                  name: str = "results.json") -> str:
  """Atomically writes ``payload`` plus ``environment()`` as JSON.

  Args:
    out_dir: output folder.
    payload: JSON-able dict (arrays become lists, NaN becomes null).
    name: file name.

  Returns:
    The path written.
  """
  path = os.path.join(out_dir, name)
  io.save_json(path, {**payload, "environment": environment()})
  return path
