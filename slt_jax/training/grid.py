"""The runs of a training call: seeds × a grid of (lr, weight decay, train
size), checked, and the PRNG key they draw from."""

from __future__ import annotations

import itertools
from typing import Optional, Sequence

import jax
import numpy as np

from slt_jax.checks import check, is_int, is_real
from slt_jax.training.config import LoopConfig
from slt_jax.tree_types import PRNGKey

__all__ = ["HPARAM_NAMES", "resolve_grid", "grid_runs", "typed_key"]

# The per-run hyperparameters of a result, seed-major.
HPARAM_NAMES = ("seed", "lr", "weight_decay", "num_train")


def _as_list(name: str, values) -> list:
  """``values`` as a non-empty list (a ValueError naming ``name`` if not)."""
  try:
    values = list(values)
  except TypeError:
    raise ValueError(
      f"{name}={values!r} is invalid: must be a sequence"
    ) from None
  check(bool(values), name, values, "must hold at least one value")
  return values


def _seed_ids(seeds: int, seed_ids: Optional[Sequence[int]]) -> list[int]:
  """The seed numbers: ``range(seeds)``, or ``seed_ids`` checked."""
  check(is_int(seeds) and seeds >= 1, "seeds", seeds, "must be an integer >= 1")
  if seed_ids is None:
    return list(range(seeds))
  ids = _as_list("seed_ids", seed_ids)
  check(
    all(is_int(s) and s >= 0 for s in ids)
    and len(set(ids)) == len(ids)
    and seeds in (1, len(ids)),
    "seed_ids",
    seed_ids,
    f"must be distinct integers >= 0, as many as seeds={seeds}",
  )
  return [int(s) for s in ids]


def _axis(name: str, values, default, kind: type, valid, requirement: str):
  """A grid axis as a list of ``kind``: ``[default]`` for None, else
  ``values`` each checked by ``valid`` (else a ValueError naming the value
  and ``requirement``)."""
  if values is None:
    return [kind(default)]
  values = _as_list(f"{name}s", values)
  for value in values:
    check(valid(value), name, value, requirement)
  return [kind(value) for value in values]


def _train_sizes(
  cfg: LoopConfig, num_rows: int, num_train: int, num_trains
) -> list[int]:
  """The ``num_trains`` axis (``[num_train]`` for None), each size leaving a
  validation row and holding at least one minibatch."""
  sizes = _axis(
    "num_train",
    [num_train] if num_trains is None else num_trains,
    None,
    int,
    lambda n: is_int(n) and 1 <= n < num_rows,
    f"must be an integer in [1, {num_rows - 1}] (at least one of the "
    f"{num_rows} rows left for validation)",
  )
  for n in sizes:
    if cfg.batch_size > n:
      raise ValueError(
        f"batch_size={cfg.batch_size} exceeds the training set of {n} "
        f"pairs (num_train={n}): lower batch_size or train on more pairs"
      )
  return sizes


def resolve_grid(
  cfg: LoopConfig,
  num_rows: int,
  num_train: int,
  *,
  seeds: int = 1,
  seed_ids: Optional[Sequence[int]] = None,
  lrs: Optional[Sequence[float]] = None,
  weight_decays: Optional[Sequence[float]] = None,
  num_trains: Optional[Sequence[int]] = None,
) -> dict[str, list]:
  """The seeds and grid axes of a training call, checked, defaults filled in.

  Args:
    cfg: the loop's configuration (``lr``, ``weight_decay``: the defaults of
      their grids; ``batch_size``: a bound on the train sizes).
    num_rows: N, the rows of the data (training prefix, then validation).
    num_train: the default train size.
    seeds: number of seeds (an integer >= 1); they are ``0, ..., seeds - 1``.
    seed_ids: explicit seed numbers used instead of ``range(seeds)`` (distinct,
      >= 0); pass ``seeds`` only if it equals ``len(seed_ids)``.
    lrs, weight_decays, num_trains: optional grids, each non-empty (None:
      ``[cfg.lr]``, ``[cfg.weight_decay]``, ``[num_train]``).

  Returns:
    ``seed_ids``, ``lrs``, ``weight_decays``, ``num_trains`` -> lists of
    Python ints or floats.

  Raises:
    ValueError: naming the argument and value: a seed count that is not an
      integer >= 1, bad seed ids, an empty grid, a learning rate that is not
      finite and > 0, a weight decay that is not finite and >= 0, a train
      size that leaves no validation row or is below ``cfg.batch_size``.

  Example:
    >>> cfg = LoopConfig(batch_size=4)
    >>> resolve_grid(cfg, 25, 12, seeds=2, lrs=[1e-2, 1e-3])
    {'seed_ids': [0, 1], 'lrs': [0.01, 0.001], 'weight_decays': [1e-05], 'num_trains': [12]}
    >>> resolve_grid(cfg, 25, 12, num_trains=[25])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: num_train=25 is invalid: must be an integer in [1, 24] ...
  """
  lr_ok = lambda x: is_real(x) and x > 0
  decay_ok = lambda x: is_real(x) and x >= 0
  return {
    "seed_ids": _seed_ids(seeds, seed_ids),
    "lrs": _axis(
      "lr", lrs, cfg.lr, float, lr_ok, "must be a finite number > 0"
    ),
    "weight_decays": _axis(
      "weight_decay",
      weight_decays,
      cfg.weight_decay,
      float,
      decay_ok,
      "must be a finite number >= 0",
    ),
    "num_trains": _train_sizes(cfg, num_rows, num_train, num_trains),
  }


def grid_runs(grid: dict[str, list]) -> dict[str, np.ndarray]:
  """The runs of a ``resolve_grid`` grid, seed-major.

  Returns:
    ``HPARAM_NAMES`` -> (R,) arrays, R = seeds × grid points.

  Example:
    >>> runs = grid_runs({"seed_ids": [0, 1], "lrs": [0.1, 0.2],
    ...                   "weight_decays": [0.0], "num_trains": [8]})
    >>> runs["seed"].tolist(), runs["lr"].tolist()
    ([0, 0, 1, 1], [0.1, 0.2, 0.1, 0.2])
  """
  runs = [
    (seed, *point)
    for seed in grid["seed_ids"]
    for point in itertools.product(
      grid["lrs"], grid["weight_decays"], grid["num_trains"]
    )
  ]
  return {
    name: np.array([r[i] for r in runs]) for i, name in enumerate(HPARAM_NAMES)
  }


def typed_key(key) -> PRNGKey:
  """``key`` as a typed PRNG key; a legacy uint32 key (``PRNGKey``) is wrapped
  with the default implementation, which draws the same numbers.

  Raises:
    ValueError: naming ``key`` if it is not a single PRNG key.

  Example:
    >>> typed_key(jax.random.PRNGKey(0)) == jax.random.key(0)
    Array(True, dtype=bool)
  """
  dtype = getattr(key, "dtype", None)
  if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
    typed = key
  else:
    try:
      typed = jax.random.wrap_key_data(key)
    except (TypeError, ValueError) as err:
      raise ValueError(
        f"key={key!r} is invalid: must be a PRNG key (jax.random.key or "
        f"jax.random.PRNGKey) ({err})"
      ) from err
  check(typed.shape == (), "key", key, "must be a single key, not an array")
  return typed
