"""A sweep's saved chunks: what names them, and who may write them.

A sweep's output folder is a ``slt_jax.persist.Parts`` folder, one part per
chunk, named by ``sweep_fingerprint``: the hash of what changes the saved
numbers. The writer process claims the folder before it saves, so a folder
holding another sweep's parts is refused, never overwritten.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax

from slt_jax import distributed, persist
from slt_jax.llc import registry
from slt_jax.llc.arguments import ObservablesSpec
from slt_jax.llc.config import SGLDConfig
from slt_jax.llc.work import WorkPlan
from slt_jax.samplers.sgld import SGLDSettings
from slt_jax.tree_types import ArrayTree

__all__ = ["chain_spec", "load_parts", "sweep_fingerprint", "tree_digest"]


def chain_spec(cfg: SGLDConfig) -> dict:
  """The config fields that change a sweep's chains beyond its settings grid.

  The sampler's name and own constants (``registry.own_constants``), the
  whole ``ChainBudget`` (``burnin_step_size`` only when set), and the
  engine's ``noise`` and ``mala_every``; not
  the traced settings (eps, nβ and γ enter as the grid), the engine's
  chunking and memory budget, nor the ``DivergencePolicy`` (host side).

  Example:
    >>> sorted(chain_spec(SGLDConfig(sampler="sghmc", chunk_size=4)))
    ... # doctest: +NORMALIZE_WHITESPACE
    ['batch_size', 'mala_every', 'noise', 'num_burnin', 'num_chains',
     'num_draws', 'sampler', 'sghmc_friction']
  """
  engine = cfg.engine
  budget = dataclasses.asdict(cfg.budget)
  if budget["burnin_step_size"] is None:  # the fingerprints before the field.
    del budget["burnin_step_size"]
  return {
    **registry.own_constants(cfg.sampler_config),
    **budget,
    "noise": engine.noise,
    "mala_every": engine.mala_every,
  }


def tree_digest(tree: ArrayTree) -> dict:
  """``{leaf path: persist.array_digest(leaf)}``.

  Example:
    >>> import numpy as np
    >>> list(tree_digest({"w": np.zeros(2)}))
    ["['w']"]
  """
  return {
    jax.tree_util.keystr(path): persist.array_digest(leaf)
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


def sweep_fingerprint(
  cfg: SGLDConfig,
  plan: WorkPlan,
  grid: SGLDSettings,
  mask: Optional[ArrayTree],
  data_digest: dict,
  spec: Optional[ObservablesSpec],
) -> str:
  """The ``persist.fingerprint`` of the chunks ``plan`` computes.

  It hashes what changes the saved numbers: the chains' configuration
  (``chain_spec``), the (S,) settings ``grid``, the points and their keys,
  the mask, the data and observable sets (``data_digest``, a
  ``tree_digest``), the observation schedule and the chunk size (which items
  a part holds). Not ``chunk_size`` or ``memory_budget_bytes`` themselves
  (only the chunk they give), nor host-side options (``divergence_factor``;
  ``num_examples`` enters only through nβ), nor the loss functions, which
  cannot be hashed: use another folder for another loss.
  """
  return persist.fingerprint(
    {
      "config": chain_spec(cfg),
      "settings": grid._asdict(),
      "keys": persist.array_digest(plan.keys),
      "points": tree_digest(plan.points),
      "mask": None if mask is None else tree_digest(mask),
      "data": data_digest,
      "observe": None if spec is None else [spec.every, spec.batch_size],
      "chunk": plan.chunk,
    }
  )


def _claim(parts: persist.Parts) -> None:
  """The writer claims the folder; every process then raises if the folder
  holds another computation's parts (the writer with ``claim``'s error)."""
  refusal = None
  if distributed.is_writer():
    try:
      parts.claim()
    except ValueError as error:
      refusal = error
  distributed.wait_for_writer(f"claiming {parts.folder}")
  if refusal is not None:
    raise refusal
  if parts.owner() != parts.fingerprint:
    raise ValueError(
      f"{parts.folder!r} holds the parts of another computation: pass "
      "another out_path, or delete that folder to discard its work"
    )


def load_parts(parts: persist.Parts, num_chunks: int) -> list:
  """Claims ``parts``' folder, then reads its saved chunks.

  Every process reads the saved parts (a file system shared by all); all
  must then run the same chunks. Only the writer process saves.

  Returns:
    ``num_chunks`` entries: a chunk's arrays, or None where not saved.

  Raises:
    ValueError: naming the folder if it holds another computation's parts,
      or a part that cannot be read.
  """
  _claim(parts)
  outputs = [parts.load(i) for i in range(num_chunks)]
  distributed.check_agreement(
    [o is not None for o in outputs],
    f"which chunks of {parts.folder} are saved",
  )
  return outputs
