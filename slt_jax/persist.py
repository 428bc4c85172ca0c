"""Atomic, pickle-free persistence, fingerprints and resumable parts.

Every write goes to a temporary file in the target directory and is renamed
into place, so a crash never leaves a half-written file. Pytrees are stored as
their flattened leaves (``prefix/0``, ``prefix/1``, ...) and rebuilt against a
template with the same structure.

The one resume mechanism of the library (the LLC sweep, training and the run
store): a computation is named by ``fingerprint(spec)``, the SHA-256 of a
canonical JSON spec of what changes its numbers (arrays enter through
``array_digest``), and its finished pieces are numbered files in a
``Parts`` folder that records which computation owns it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from typing import Any, Optional

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
  "array_digest",
  "fingerprint",
  "Parts",
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


def array_digest(x: Any) -> str:
  """SHA-256 (hex) of an array's dtype, shape and bytes; PRNG keys by their data.

  Example:
    >>> import numpy as np
    >>> array_digest(np.zeros(3)) == array_digest(np.zeros(3, np.float32))
    False
  """
  if isinstance(x, jax.Array) and jax.dtypes.issubdtype(
    x.dtype, jax.dtypes.prng_key
  ):
    x = jax.random.key_data(x)
  x = np.ascontiguousarray(np.asarray(x))
  head = f"{x.dtype.str}{x.shape}".encode()
  return hashlib.sha256(head + x.tobytes()).hexdigest()


def fingerprint(spec: Any) -> str:
  """SHA-256 (hex) of a spec's canonical JSON (sorted keys, no spaces).

  Args:
    spec: JSON-able values (dicts, lists, strings, finite numbers); hash arrays
      with ``array_digest`` first.

  Example:
    >>> fingerprint({"a": 1, "b": [2.0]}) == fingerprint({"b": [2.0], "a": 1})
    True
  """
  text = json.dumps(
    _to_builtin(spec), sort_keys=True, separators=(",", ":"), allow_nan=False
  )
  return hashlib.sha256(text.encode()).hexdigest()


class Parts:
  """Numbered ``.npz`` parts of one computation, kept in one folder to resume.

  The folder's ``owner.json`` records the computation's fingerprint. A folder
  that holds parts of another computation is refused (``claim`` raises), so
  finished work is never overwritten; a part whose recorded fingerprint
  differs is never loaded.

  Example:
    >>> import tempfile
    >>> parts = Parts(tempfile.mkdtemp(), "abc", prefix="chunk")
    >>> parts.claim(); parts.save(0, {"x": np.arange(2)})
    >>> parts.load(0)["x"], parts.load(1)
    (array([0, 1]), None)
    >>> Parts(parts.folder, "other").claim()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: ...holds the parts of another computation...
  """

  OWNER = "owner.json"

  def __init__(self, folder: str, fingerprint: str, prefix: str = "part"):
    if os.path.isfile(folder):
      raise ValueError(f"{folder!r} is a file: parts need a folder")
    self.folder, self.fingerprint, self.prefix = folder, fingerprint, prefix

  def path(self, index: int) -> str:
    """The file of part ``index``."""
    return os.path.join(self.folder, f"{self.prefix}_{index:05d}.npz")

  def _has_parts(self) -> bool:
    return os.path.isdir(self.folder) and any(
      name.startswith(self.prefix + "_") and name.endswith(".npz")
      for name in os.listdir(self.folder)
    )

  def owner(self) -> Optional[str]:
    """The fingerprint recorded in the folder, or None."""
    path = os.path.join(self.folder, self.OWNER)
    if not os.path.exists(path):
      return None
    try:
      return str(load_json(path)["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError) as err:
      raise ValueError(
        f"{path} is unreadable ({err}): fix or delete it"
      ) from err

  def claim(self) -> None:
    """Makes the folder this computation's, or raises if it is another's.

    Raises:
      ValueError: naming the folder, if it holds parts of another computation.
    """
    owner = self.owner()
    if owner == self.fingerprint:
      return
    if owner is not None or self._has_parts():
      raise ValueError(
        f"{self.folder!r} holds the parts of another computation "
        f"(fingerprint {owner or 'unrecorded'}, this one is "
        f"{self.fingerprint}): pass another folder, or delete that one to "
        "discard its work"
      )
    save_json(
      os.path.join(self.folder, self.OWNER), {"fingerprint": self.fingerprint}
    )

  def load(self, index: int) -> Optional[dict[str, np.ndarray]]:
    """Part ``index``'s arrays, or None if it is not saved (or not ours).

    Raises:
      ValueError: naming the file, if it exists but cannot be read.
    """
    path = self.path(index)
    if not os.path.exists(path):
      return None
    try:
      saved = load_npz(path)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
      raise ValueError(
        f"{path} is unreadable ({type(err).__name__}: {err}): delete it to "
        "recompute that part"
      ) from err
    if str(saved.pop("fingerprint", "")) != self.fingerprint:
      return None
    return saved

  def save(self, index: int, arrays: dict[str, Any]) -> None:
    """Atomically writes part ``index`` (stamped with the fingerprint)."""
    save_npz(
      self.path(index), {"fingerprint": np.array(self.fingerprint), **arrays}
    )
