"""The resumable state of a training call in its ``out_dir``.

Through ``slt_jax.persist``: the setup is named by ``persist.fingerprint`` of
its spec (``setup_fingerprint``), each chunk's checkpoints and metrics are a
part of a ``persist.Parts`` folder, and the small current state is one file
stamped with the same fingerprint; a folder of another setup is refused.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import zipfile
from typing import Optional

import jax
import numpy as np

from slt_jax import distributed, persist
from slt_jax.training.config import LoopConfig
from slt_jax.tree_types import ArrayTree, PRNGKey

__all__ = [
  "STATE_FORMAT",
  "STATE_FILE",
  "CHUNKS_DIR",
  "RESERVED_SPEC_KEYS",
  "setup_fingerprint",
  "remove_saved_state",
]

# Part of the fingerprint, bumped when the layout of ``out_dir`` changes: a
# folder of an older layout is refused.
STATE_FORMAT = 3
STATE_FILE = "train_state.npz"
CHUNKS_DIR = "train_chunks"
# Entries of the fingerprint that a caller's spec may not replace.
RESERVED_SPEC_KEYS = ("format", "key", "hparams")


def setup_fingerprint(
  key: PRNGKey,
  all_data: ArrayTree,
  cfg: LoopConfig,
  hparams: dict[str, np.ndarray],
  spec: dict,
) -> str:
  """``persist.fingerprint`` of what determines a training call's numbers.

  Args:
    key: the typed training key.
    all_data: the data pytree (entered as ``data``: its structure and the
      SHA-256 of each leaf).
    cfg: the loop's configuration (entered as ``train``).
    hparams: the runs (``grid.grid_runs``).
    spec: the caller's description of what the loop cannot see (the model);
      its entries are added, replacing ``data`` or ``train`` if it names
      them (a caller may describe its data or configuration in its own
      terms, which must then determine them).

  Returns:
    A SHA-256 hex string.

  Example:
    >>> import jax.numpy as jnp
    >>> args = (jax.random.key(0), {"x": jnp.zeros(3)}, LoopConfig(), {})
    >>> a = setup_fingerprint(*args, {"model": "linear"})
    >>> a == setup_fingerprint(*args, {"model": "mlp"}), len(a)
    (False, 64)
  """
  return persist.fingerprint(
    {
      "format": STATE_FORMAT,
      "key": {
        "impl": str(jax.random.key_impl(key)),
        "data": jax.random.key_data(key),
      },
      "data": {
        "structure": str(jax.tree.structure(all_data)),
        "leaves": [persist.array_digest(x) for x in jax.tree.leaves(all_data)],
      },
      "train": dataclasses.asdict(cfg),
      "hparams": hparams,
      **spec,
    }
  )


def _read_npz(path: str, what: str) -> dict:
  """``persist.load_npz`` whose failures name the file (never a silent load)."""
  try:
    return persist.load_npz(path)
  except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
    raise ValueError(
      f"{path} is unreadable ({type(err).__name__}: {err}): {what}"
    ) from err


class Resume:
  """The resumable state of one setup in ``out_dir``.

  Each chunk's checkpoints and metrics are a part of ``persist.Parts`` in
  ``train_chunks/`` (which refuses a folder of another setup); the current
  optimisation and stopping state is ``train_state.npz``. Both are stamped
  with the setup's fingerprint, and only the writer process writes them.
  """

  def __init__(self, out_dir: str, fingerprint: str):
    self.out_dir, self.fingerprint = out_dir, fingerprint
    self.state_path = os.path.join(out_dir, STATE_FILE)
    self.chunks = persist.Parts(
      os.path.join(out_dir, CHUNKS_DIR), fingerprint, prefix="chunk"
    )
    self.advice = (
      f"the training state in {out_dir} cannot be resumed; delete "
      f"{self.state_path} and {self.chunks.folder} (remove_saved_state) to "
      "train from scratch"
    )

  def _saved_state(self) -> Optional[dict]:
    """The saved state's arrays, or None if there is none.

    Raises:
      ValueError: naming the file if it is unreadable, or ``out_dir`` if it
        holds the state of another setup (nothing is overwritten).
    """
    if not os.path.exists(self.state_path):
      return None
    saved = _read_npz(self.state_path, self.advice)
    owner = str(saved.pop("fingerprint", "unrecorded"))
    if owner != self.fingerprint:
      raise ValueError(
        f"{self.out_dir!r} holds the training state of another setup "
        f"(fingerprint {owner}, this one is {self.fingerprint}): pass "
        "another out_dir, or delete its "
        f"{STATE_FILE} and {CHUNKS_DIR} (remove_saved_state) to discard "
        "that work"
      )
    return saved

  def _load_chunk(self, chunk: int, template: ArrayTree, metrics_shape):
    """(checkpoints, metrics) of a saved chunk, checked against the state."""
    path = self.chunks.path(chunk)
    try:
      saved = self.chunks.load(chunk)
    except ValueError as err:
      raise ValueError(
        f"{path} is unreadable ({err.__cause__!r}): {self.advice}"
      ) from err
    if saved is None:
      raise ValueError(f"{path} is missing or of another setup: {self.advice}")
    num_leaves = len(jax.tree.leaves(template))
    if saved.get("metrics", np.zeros(0)).shape != metrics_shape or any(
      f"ckpts/{i}" not in saved for i in range(num_leaves)
    ):
      raise ValueError(
        f"{path} does not hold this setup's chunk {chunk} (its arrays "
        f"differ): {self.advice}"
      )
    return persist.tree_from_arrays("ckpts", saved, template), saved["metrics"]

  def restore(self, runs, state, stop):
    """Claims the folder and loads what is saved in it.

    Args:
      runs: the call's ``trainer.Runs`` (placement, R, config, task).
      state, stop: the initial ``TrainState`` and ``StopState`` (templates).

    Returns:
      (state, stop, checkpoints, metrics): the saved state placed like
      ``runs`` and each saved chunk's host checkpoints and metrics (lists);
      the given ``state`` and ``stop`` and empty lists when nothing is saved.
    """
    saved = self._saved_state()
    if distributed.is_writer():
      self.chunks.claim()
    if saved is None:
      return state, stop, [], []
    state = runs.pad(persist.tree_from_arrays("state", saved, state))
    stop = runs.pad(persist.tree_from_arrays("stop", saved, stop))
    cfg = runs.cfg
    shape = (
      runs.num_runs,
      cfg.chunk_steps // cfg.log_every,
      len(runs.task.metric_names),
    )
    chunks = [
      self._load_chunk(chunk, state.params, shape)
      for chunk in range(int(saved["chunks_done"]))
    ]
    return state, stop, [c for c, _ in chunks], [m for _, m in chunks]

  def save(self, chunk: int, ckpts, metrics, state, stop) -> None:
    """Writes chunk ``chunk``'s outputs, then the state after it (host
    arrays); only on the writer process."""
    if not distributed.is_writer():
      return
    self.chunks.save(
      chunk, {"metrics": metrics, **persist.tree_to_arrays("ckpts", ckpts)}
    )
    persist.save_npz(
      self.state_path,
      {
        "fingerprint": np.array(self.fingerprint),
        "chunks_done": chunk + 1,
        **persist.tree_to_arrays("state", state),
        **persist.tree_to_arrays("stop", stop),
      },
    )


def remove_saved_state(out_dir: str) -> None:
  """Deletes the resumable state that training keeps in ``out_dir``.

  Args:
    out_dir: a folder passed to ``train_models`` (or the domain's ``train``);
      other files in it are kept.

  Example:
    >>> remove_saved_state("/nonexistent/folder")  # nothing to remove
  """
  path = os.path.join(out_dir, STATE_FILE)
  if os.path.exists(path):
    os.remove(path)
  shutil.rmtree(os.path.join(out_dir, CHUNKS_DIR), ignore_errors=True)
