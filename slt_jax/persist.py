"""Atomic, pickle-free persistence: ``.npz`` for arrays, JSON for the rest.

Every write goes to a temporary file in the target directory and is renamed
into place, so a crash never leaves a half-written file. Pytrees are stored as
their flattened leaves (``prefix/0``, ``prefix/1``, ...) and rebuilt against a
template with the same structure.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import jax
import numpy as np

__all__ = [
  "atomic_write",
  "save_npz",
  "load_npz",
  "save_json",
  "load_json",
  "tree_to_arrays",
  "tree_from_arrays",
]


def atomic_write(path: str, write) -> None:
  """Calls ``write(binary_file)`` on a temporary file, then renames it to
  ``path`` (creating its directory); the temporary file is removed on error."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      write(f)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600 files.
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def save_npz(path: str, arrays: dict[str, Any]) -> None:
  """Atomically writes a dict of arrays to ``path`` (.npz, uncompressed)."""
  atomic_write(
    path, lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
  )


def load_npz(path: str) -> dict[str, np.ndarray]:
  """Reads an .npz written by ``save_npz`` (``allow_pickle=False``)."""
  with np.load(path, allow_pickle=False) as f:
    return {k: f[k] for k in f.files}


def _to_builtin(x: Any) -> Any:
  if isinstance(x, dict):
    return {str(k): _to_builtin(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_to_builtin(v) for v in x]
  if isinstance(x, (np.ndarray, jax.Array)):
    return _to_builtin(np.asarray(x).tolist())
  if isinstance(x, (np.floating, float)):
    return float(x) if np.isfinite(x) else None
  if isinstance(x, np.integer):
    return int(x)
  if isinstance(x, np.bool_):
    return bool(x)
  return x


def save_json(path: str, obj: Any) -> None:
  """Atomically writes ``obj`` as JSON (arrays become lists, NaN/inf null)."""
  text = json.dumps(_to_builtin(obj), indent=1, allow_nan=False)
  atomic_write(path, lambda f: f.write(text.encode()))


def load_json(path: str) -> Any:
  """Reads a JSON file."""
  with open(path) as f:
    return json.load(f)


def tree_to_arrays(prefix: str, tree: Any) -> dict[str, np.ndarray]:
  """Flattens a pytree into ``{prefix/i: leaf}``."""
  return {
    f"{prefix}/{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(tree))
  }


def tree_from_arrays(
  prefix: str, arrays: dict[str, np.ndarray], template: Any
) -> Any:
  """Rebuilds a pytree with ``template``'s structure from ``tree_to_arrays``."""
  treedef = jax.tree.structure(template)
  leaves = [arrays[f"{prefix}/{i}"] for i in range(treedef.num_leaves)]
  return jax.tree.unflatten(treedef, leaves)
